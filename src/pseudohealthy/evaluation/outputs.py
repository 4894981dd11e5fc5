"""Writing evaluation results: plain JSON (no NaN or Infinity tokens) and no silent overwrite."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from pseudohealthy.errors import UserError


def json_safe(value: Any) -> Any:
    """Plain JSON values: NaN (undefined) becomes null, +-inf the strings "inf" / "-inf", numpy scalars plain."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def refuse_existing_file(path: str | Path, overwrite: bool) -> None:
    """Refuse to replace an existing output file unless ``overwrite`` is set."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path}: output file already exists; pass --overwrite to replace it.")
    if path.exists() and path.is_dir():
        raise UserError(f"{path}: is a folder; pass a file name for the JSON result.")


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented plain JSON, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(payload), indent=2) + "\n")
    return path
