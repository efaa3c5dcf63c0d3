"""Parameterised notebook reports: papermill runs the notebook headless, nbconvert writes a standalone HTML page
in which every plotly figure is drawn offline (plotly.js embedded) and every widget view has a static twin."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .runs import atomic_write_bytes

KERNEL = "python3"


class ParameterError(ValueError):
    pass


def notebook_parameters(notebook: str | Path) -> dict:
    """{name: {"default": str, "type": str}} from the notebook's cell tagged ``parameters``."""
    import papermill as pm

    params = pm.inspect_notebook(str(notebook))
    if not params:
        raise ParameterError(f"{notebook} has no cell tagged 'parameters'")
    out = {}
    for k, v in params.items():
        kind = v["inferred_type_name"]
        if kind in (None, "None"):  # no annotation: the type of the default literal
            value = parse_value(v["default"])
            kind = "any" if value is None else type(value).__name__
        out[k] = {"default": v["default"], "type": kind}
    return out


def parse_value(text: str):
    """'3' -> 3, '0.5' -> 0.5, 'true'/'False' -> bool, 'none' -> None, '[1, 2]' -> list, anything else -> str."""
    import ast

    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def check_parameters(notebook: str | Path, given: dict) -> dict:
    """Unknown names and wrong types fail with a message that names the parameter and the fix."""
    known = notebook_parameters(notebook)
    out = {}
    for name, value in given.items():
        if name not in known:
            raise ParameterError(f"{Path(notebook).name} has no parameter {name!r}; its parameters: "
                                 + ", ".join(f"{k} ({v['type']}, default {v['default']})" for k, v in known.items()))
        want = known[name]["type"]
        ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "bool": lambda v: isinstance(v, bool),
              "str": lambda v: isinstance(v, str),
              "list": lambda v: isinstance(v, list)}.get(want.split("[")[0].strip(), lambda v: True)
        if not ok(value):
            raise ParameterError(f"parameter {name!r} of {Path(notebook).name} must be {want} (default "
                                 f"{known[name]['default']}), got {value!r} ({type(value).__name__}); "
                                 f"fix: -p {name} <{want}>")
        out[name] = float(value) if want == "float" else value
    return out


def execute(notebook: str | Path, output: str | Path, parameters: dict | None = None, cwd: str | Path | None = None,
            progress: bool = True) -> Path:
    """Run a notebook headless with papermill (``interactive`` off unless given); returns the output notebook."""
    import papermill as pm

    notebook = Path(notebook)
    if not notebook.exists():
        raise FileNotFoundError(f"no notebook {notebook}")
    params = check_parameters(notebook, dict(parameters or {}))
    if "interactive" in notebook_parameters(notebook):
        params.setdefault("interactive", False)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(notebook), str(output), parameters=params, kernel_name=KERNEL,
                        cwd=str(cwd or notebook.parent), progress_bar=progress)
    return output


def to_html(executed: str | Path) -> bytes:
    """A standalone HTML page of an executed notebook (lab template; plotly.js is inside the outputs)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(executed), as_version=4)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return body.encode()


def report(notebook: str | Path, out: str | Path, parameters: dict | None = None, keep_notebook: bool = True,
           progress: bool = True) -> Path:
    """papermill + nbconvert: ``out`` (.html), and beside it the executed ``.ipynb`` if ``keep_notebook``."""
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        executed = execute(notebook, Path(tmp) / Path(notebook).name, parameters, progress=progress)
        html = to_html(executed)
        if keep_notebook:
            atomic_write_bytes(out.with_suffix(".ipynb"), executed.read_bytes())
    atomic_write_bytes(out, html)
    return out
