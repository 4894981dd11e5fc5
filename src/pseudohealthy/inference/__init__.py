"""Volume in, volume out: synthesis with a trained generator, lesion contrast enhancement, classical lesion fills."""
