"""The blinded reader study (paper section V-D, Table II): create, serve and export.

``create`` picks lesion slices and renders them; ``db`` holds the study and its ratings in SQLite;
``app`` is the rater and admin web app (Flask, served by waitress); ``export`` writes Table II.
Nothing here imports torch, so the web server starts fast.
"""
from __future__ import annotations
