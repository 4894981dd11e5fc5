"""Experiments built on trained models: the downstream segmentation experiment (Table III, Fig. 8b/8c)."""
