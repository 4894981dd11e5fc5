"""Moved to :mod:`pseudohealthy.device` (used by synthesis and evaluation too); this shim keeps old
imports working."""
from __future__ import annotations

from pseudohealthy.device import *  # noqa: F401,F403
