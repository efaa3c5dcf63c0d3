"""What a notebook calls first: ``setup(interactive)``, then ``show(view_or_figure)`` for every picture.

With ``interactive`` on (JupyterLab), a view shows its live widget. With it off (papermill, CI, reports), the
widget is still displayed (its state is saved in the notebook) and a static plotly figure is shown beside it,
so an HTML export, where widgets cannot run offline, still shows everything.
"""

from __future__ import annotations

from pathlib import Path

from .config import check_params as check_config

_STATE = {"interactive": True}


def setup(interactive: bool = True, threads: int | None = None) -> None:
    """Plotly outputs carry both the plotly mimetype (JupyterLab) and self-contained HTML (exported reports).

    Torch gets ``threads`` threads, by default WORKBENCH_THREADS or every core available (``hardware.set_threads``);
    give fewer when the notebook shares the machine with a sweep or a teacher training in the background.
    """
    import plotly.io as pio

    from .hardware import set_threads

    set_threads(threads)
    if not isinstance(interactive, bool):
        raise TypeError(f"interactive must be True or False, got {interactive!r} ({type(interactive).__name__})")
    _STATE["interactive"] = interactive
    pio.renderers.default = "plotly_mimetype+notebook"


def interactive() -> bool:
    return _STATE["interactive"]


def show(view) -> None:
    """Display a widget view (anything with ``.widget``/``.static()``), a FigureWidget or a plain figure."""
    from IPython.display import display

    if hasattr(view, "widget"):
        display(view.widget)
        if not _STATE["interactive"]:
            view.static().show()
    elif hasattr(view, "show"):
        view.show()
    else:
        display(view)


def check_params(config=None, /, **params) -> None:
    """Fail early, naming the parameter, when a notebook parameter (papermill -p KEY VALUE) is wrong.

    ``check_params(DistillConfig, loss=loss, tau=tau)`` checks parameters that set fields of a config against the
    config itself (type and choices: one source); ``check_params(out_dir=(out_dir, str))`` checks the notebook's own
    parameters against the types given."""
    if config is not None:

        check_config(config, **params)
        return
    for name, (value, kinds) in params.items():
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if float in kinds:
            kinds = kinds + (int,)
        ok = isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
        if not ok:
            want = " or ".join(k.__name__ for k in kinds)
            raise TypeError(f"notebook parameter {name!r} must be {want}, got {value!r} ({type(value).__name__}); "
                            f"pass e.g. -p {name} <{want}>")


def new_run_dir(base: str | Path) -> Path:
    """A fresh folder under ``base`` named by the time (earlier runs are kept, never overwritten)."""
    import time

    base = Path(base)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, k = base / stamp, 1
    while path.exists():
        path, k = base / f"{stamp}-{k}", k + 1
    path.mkdir(parents=True)
    return path
