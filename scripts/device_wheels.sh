#!/usr/bin/env bash
# The wheels the accelerator machine lacks (../shared/DEVICE.md: it has torch, numpy, safetensors, tqdm and pytest,
# but no package registry), downloaded here into .whl (ignored by git), for scripts/device_check.sh to install there:
#
#   scripts/device_wheels.sh                   here, where PyPI answers (about 4 MB)
#   then the device run with carry [".whl"]    and `bash scripts/device_check.sh $OUT` as its command
#
# The versions are this project's own (its .venv's); the platform is the device's Python 3.12 on x86-64 Linux.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl \
  "ale-py==$(version ale-py)" "gymnasium==$(version gymnasium)" "farama-notifications==$(version farama-notifications)" \
  "minatar==$(version minatar)" "cloudpickle==$(version cloudpickle)"
ls -l .whl
