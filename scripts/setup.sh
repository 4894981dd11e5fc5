#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv; fast when nothing changed.
# torch==2.13.0 (a CPU build) is installed only when no torch is importable: a user's own torch
# (for example a CUDA build in the system Python) is kept, through --system-site-packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
    if "$PY" -c "import torch" >/dev/null 2>&1; then
        echo "setup: using the torch already installed for $PY"
        "$PY" -m venv --system-site-packages .venv
    else
        "$PY" -m venv .venv
    fi
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    echo "setup: installing torch==2.13.0"
    .venv/bin/python -m pip install -q torch==2.13.0
fi
stamp=.venv/.pseudohealthy-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "setup: installing pseudohealthy and its test extras"
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e ".[test]"
    echo "$want" >"$stamp"
fi
