"""Volume in, volume out: synthesis with a trained generator, and lesion contrast enhancement."""
