"""`workbench doctor`: is everything the workbench uses installed and working? Each check says how to fix it."""

from __future__ import annotations

import importlib

FIX_VENV = "run `make venv` (or `pip install -e .[dev]` in your environment)"


def _version(module: str) -> str:
    mod = importlib.import_module(module)
    return getattr(mod, "__version__", "installed")


def _check_torch():
    import torch

    want = "2.13.0"
    ok = torch.__version__.split("+")[0] == want
    return ok, f"torch {torch.__version__}" + ("" if ok else f"; the workbench pins {want}: pip install torch=={want}")


def _check_ale():
    import ale_py

    roms = ale_py.roms.get_all_rom_ids()
    ok = "pong" in roms and "breakout" in roms
    return ok, f"ale-py {ale_py.__version__}, {len(roms)} ROMs" + ("" if ok else "; reinstall ale-py (it ships ROMs)")


def _check_minatar():
    from .envs import make_env

    env, spec = make_env("MinAtar/Breakout-v1", 1, seed=0)
    env.close()
    return True, f"MinAtar Breakout-v1 obs {spec.obs_shape}"


def _check_kernel():
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    ok = "python3" in specs
    return ok, ("python3 kernel at " + specs["python3"]) if ok else "no python3 kernel: python -m ipykernel install --user"


CHECKS = [
    ("torch", _check_torch, f"pip install torch==2.13.0 ({FIX_VENV})"),
    ("gymnasium", lambda: (True, "gymnasium " + _version("gymnasium")), FIX_VENV),
    ("ale-py ROMs", _check_ale, "pip install ale-py"),
    ("MinAtar", _check_minatar, "pip install minatar"),
    ("OpenCV", lambda: (True, "opencv " + _version("cv2")), "pip install opencv-python-headless"),
    ("safetensors", lambda: (True, "safetensors " + _version("safetensors")), "pip install safetensors"),
    ("plotly", lambda: (True, "plotly " + _version("plotly")), "pip install plotly"),
    ("ipywidgets", lambda: (True, "ipywidgets " + _version("ipywidgets")), "pip install ipywidgets"),
    ("papermill", lambda: (True, "papermill " + _version("papermill")), "pip install papermill"),
    ("Jupyter kernel", _check_kernel, "pip install ipykernel jupyterlab"),
]


def run_checks():
    """Yields (name, ok, detail) for each check; a failing import says how to fix it."""
    for name, check, fix in CHECKS:
        try:
            ok, detail = check()
        except Exception as exc:  # noqa: BLE001 - a doctor reports every failure, whatever it is
            ok, detail = False, f"{type(exc).__name__}: {exc}. Fix: {fix}"
        yield name, ok, detail
