"""pseudohealthy: pseudo-healthy synthesis of medical images (Generator Versus Segmentor, GVS)."""
from __future__ import annotations

__version__ = "0.1.0"
