"""Moved to :mod:`pseudohealthy.checkpoints` (read by synthesis and evaluation, so it lives below
training); this shim keeps old imports working."""
from __future__ import annotations

from pseudohealthy.checkpoints import *  # noqa: F401,F403
from pseudohealthy.checkpoints import _load_weights  # noqa: F401
