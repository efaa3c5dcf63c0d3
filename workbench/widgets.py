"""ipywidgets views over traces and runs. Each view has ``.widget`` (for JupyterLab) and ``.static()`` (a plotly
figure that an exported report shows where widgets cannot run); :func:`workbench.notebook.show` picks.

Animation changes an Image widget's ``value`` in place (no re-display, no flicker).
"""

from __future__ import annotations

import numpy as np

from . import plots
from .config import _plain, choices, convert, field_docs, hints
from .distill.loop import DistillConfig, distill, distill_config
from .hardware import available_devices
from .nets import size_tag
from .teachers import list_teachers
from .trace import Trace, agent_view, branch, saliency, upscale
from .video import bars_image, timeline_image


def png(img: np.ndarray, scale: int = 1) -> bytes:
    """RGB uint8 -> PNG bytes, upscaled by ``scale``."""
    return plots.png(upscale(img, scale))


def _scales(trace: Trace) -> tuple[int, int]:
    """Upscaling for (human screen, agent view) so both show at a readable size."""
    h = trace.screens.shape[1]
    screen = max(1, 320 // h)
    agent_h = agent_view(trace.obs[0], trace.family).shape[0]
    return screen, max(1, 240 // agent_h)


class EpisodePlayer:
    """Play button and slider over a trace: the frame (human and agent view), both policies' action
    probabilities, the agreement timeline with disagreements, a jump to the next disagreement, the reward track;
    with the two policies at hand and a live trace, a branch view and a saliency view of the current frame.
    """

    def __init__(self, trace: Trace, teacher=None, student=None, fps: int = 8, branch_steps: int = 30):
        import ipywidgets as W

        self.trace, self.teacher, self.student, self.branch_steps = trace, teacher, student, branch_steps
        self._scale = _scales(trace)
        T = trace.length
        self.play = W.Play(value=0, min=0, max=T - 1, step=1, interval=int(1000 / fps), description="Play")
        self.slider = W.IntSlider(value=0, min=0, max=T - 1, description="frame", continuous_update=True,
                                  layout=W.Layout(width="420px"))
        W.jslink((self.play, "value"), (self.slider, "value"))
        self.screen = W.Image(format="png", value=png(trace.screens[0], self._scale[0]))
        self.agent = W.Image(format="png", value=png(agent_view(trace.obs[0], trace.family), self._scale[1]))
        self.info = W.HTML()
        self.next_button = W.Button(description="next disagreement", icon="forward",
                                    disabled=not len(trace.disagreements))
        self.next_button.on_click(lambda _: self.jump_to_disagreement())
        # Bars and timeline are PIL-drawn images: redrawn on every frame without flicker, and light to save
        # (a plotly FigureWidget would store its whole JavaScript bundle in the notebook's widget state).
        self._bars_height = max(self._scale[0] * trace.screens.shape[1], 60 + 16 * len(trace.action_names))
        self.bars = W.Image(format="png", value=png(bars_image(trace, 0, self._bars_height)))
        self.timeline = W.Image(format="png", value=png(timeline_image(trace, 0)))
        self.extra = W.Output()
        buttons = [self.next_button]
        if teacher is not None and student is not None:
            self.saliency_button = W.Button(description="saliency here", icon="eye")
            self.saliency_button.on_click(lambda _: self._show(self.saliency_figure()))
            buttons.append(self.saliency_button)
            if trace.snapshots:
                self.branch_button = W.Button(description=f"branch {branch_steps} steps", icon="code-fork")
                self.branch_button.on_click(lambda _: self._show(self.branch_figure()))
                buttons.append(self.branch_button)
        self.slider.observe(lambda ch: self.show_frame(ch["new"]), names="value")
        labelled = lambda title, w: W.VBox([W.HTML(f"<b>{title}</b>"), w])  # noqa: E731
        self.widget = W.VBox([
            W.HBox([self.play, self.slider, *buttons]),
            self.info,
            W.HBox([labelled("as a human sees it", self.screen), labelled("as the agent sees it", self.agent),
                    labelled("action probabilities", self.bars)]),
            labelled("agreement along the episode (green agree, red disagree; ticks: rewards)", self.timeline),
            self.extra,
        ])
        self.show_frame(0)

    @property
    def t(self) -> int:
        return int(self.slider.value)

    def show_frame(self, t: int) -> None:
        tr, names = self.trace, self.trace.action_names
        self.screen.value = png(tr.screens[t], self._scale[0])
        self.agent.value = png(agent_view(tr.obs[t], tr.family), self._scale[1])
        self.bars.value = png(bars_image(tr, t, self._bars_height))
        self.timeline.value = png(timeline_image(tr, t))
        mark = "agree" if tr.agree[t] else "<span style='color:#d62728'><b>disagree</b></span>"
        first, second = tr.names
        self.info.value = (f"frame {t}/{tr.length - 1} &nbsp; {first}: <b>{names[tr.teacher_actions[t]]}</b> &nbsp; "
                           f"{second}: <b>{names[tr.student_actions[t]]}</b> ({mark}) &nbsp; "
                           f"reward {tr.rewards[t]:g}, return so far {tr.rewards[:t + 1].sum():g}")

    def jump_to_disagreement(self) -> int | None:
        t = self.trace.next_disagreement(self.t)
        if t is not None:
            self.slider.value = t
        return t

    def _show(self, fig) -> None:
        from IPython.display import display

        self.extra.clear_output(wait=True)
        with self.extra:
            display(fig)

    def saliency_figure(self, t: int | None = None):
        t = self.t if t is None else t
        tr = self.trace
        frame = agent_view(tr.obs[t], tr.family)
        return plots.saliency_figure(frame, saliency(self.teacher, tr.obs[t]), saliency(self.student, tr.obs[t]),
                                     title=f"Perturbation saliency on frame {t} (Greydanus et al. 2018)")

    def branch_figure(self, t: int | None = None):
        t = self.t if t is None else t
        result = branch(self.trace, t, self.teacher, self.student, self.branch_steps)
        return plots.branch_figure(result, self.trace.action_names, every=max(1, self.branch_steps // 10))

    def static(self, t: int | None = None):
        """The report's stand-in: frame t (default: the first disagreement) with bars and the timeline."""
        if t is None:
            d = self.trace.disagreements
            t = int(d[0]) if len(d) else 0
        return plots.episode_figure(self.trace, t)


class LivePlot:
    """A plotly FigureWidget of training curves that a run's ``callback`` updates row by row."""

    def __init__(self, keys=plots.DISTILL_KEYS, title: str = "", interactive: bool = True, x_title: str = "env steps"):
        self.keys, self.rows, self.title, self.interactive = tuple(keys), [], title, interactive
        self.x_title = x_title
        self.figure = None
        if interactive:
            import plotly.graph_objects as go
            from IPython.display import display

            self.figure = go.FigureWidget(plots.live_figure([], self.keys, x_title))
            self.figure.update_layout(title=title)
            display(self.figure)

    def __call__(self, row: dict) -> None:
        self.rows.append(row)
        if self.figure is None:
            return
        with self.figure.batch_update():
            for trace_, key in zip(self.figure.data, self.keys):
                pts = [(r["step"], r[key]) for r in self.rows if r.get(key) is not None]
                trace_.x = [p[0] for p in pts]
                trace_.y = [p[1] for p in pts]

    def static(self):
        fig = plots.live_figure(self.rows, self.keys, self.x_title)
        fig.update_layout(title=self.title)
        return fig


def config_widget(cls, name: str, value, style: dict, options: list | None = None):
    """One form field for field ``name`` of config ``cls``: its type picks the widget, its choices the options, its
    docstring the tooltip. An optional field is a text box whose empty value means None (the config's default)."""
    import ipywidgets as W

    hint, optional = _plain(hints(cls)[name])
    common = {"description": name.replace("_", " "), "tooltip": field_docs(cls).get(name, ""), "style": style}
    opts = choices(hint)
    if opts:
        return W.Dropdown(options=list(opts), value=value, **common)
    if options is not None:
        return W.Combobox(value=str(value), options=options, **common)
    if optional or hint is str:
        return W.Text(value="" if value is None else str(value), placeholder="default" if optional else "", **common)
    if hint is bool:
        return W.Checkbox(value=bool(value), indent=False, **common)
    return (W.IntText if hint is int else W.FloatText)(value=value, **common)


def config_value(cls, name: str, widget):
    """A form field's value as config field ``name`` takes it (text converted by the field's type)."""

    hint, optional = _plain(hints(cls)[name])
    value = widget.value
    if isinstance(value, str):
        value = value.strip()
        if optional and not value:
            return None
        return convert(value, hint)
    return value


class DistillForm:
    """A form for one distillation run with a live plot, its fields read off ``DistillConfig`` (type, choices,
    default, help): teacher, student size and shape (``CONV:HIDDEN`` layer widths at the size's parameter count, or
    empty for the preset's own), loss, tau (empty: the teacher's default), beta, method (collect, or balanced
    multi-stage distillation), env steps (the teacher-query budget) and seed.

    ``run()`` distils with the form's current values and returns the card; the **Distil** button does the same.
    """

    FIELDS = ("teacher", "student_net", "student_layers", "loss", "tau", "beta", "method", "total_steps", "seed",
              "device")

    def __init__(self, out_dir: str = "runs/distill", preset: str = "demo", interactive: bool = True, **values):
        import ipywidgets as W

        unknown = set(values) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"DistillForm has no field(s) {sorted(unknown)}; its fields: {', '.join(self.FIELDS)}")
        defaults = distill_config(preset, values.get("teacher", "minatar-breakout"))
        start = {**{name: getattr(defaults, name) for name in self.FIELDS}, **values}
        shipped = list_teachers()
        self.preset, self.out_dir, self.interactive = preset, out_dir, interactive
        style = {"description_width": "110px"}
        options = {"teacher": list(shipped["name"]) if len(shipped) else None, "device": available_devices()}
        self.fields = {name: config_widget(DistillConfig, name, start[name], style, options=options.get(name))
                       for name in self.FIELDS}
        self.button = W.Button(description="Distil", button_style="primary", icon="play")
        self.output = W.Output()
        self.button.on_click(lambda _: self._run_into_output())
        boxes = list(self.fields.values())
        half = (len(boxes) + 1) // 2
        self.widget = W.VBox([W.HBox([W.VBox(boxes[:half]), W.VBox(boxes[half:] + [self.button])]), self.output])
        self.card, self.out = None, None

    def values(self) -> dict:

        return {name: config_value(DistillConfig, name, w) for name, w in self.fields.items()}

    def _run_into_output(self) -> None:
        self.output.clear_output()
        with self.output:
            self.run()

    def run(self) -> dict:
        from pathlib import Path

        v = self.values()
        method = "" if v["method"] == "collect" else f"-{v['method']}"
        self.out = Path(self.out_dir) / (f"{size_tag(v['student_net'], v['student_layers'])}-{v['loss']}{method}-"
                                         f"s{v['seed']}")
        config = distill_config(self.preset, **v, log_every=max(v["total_steps"] // 10, 1_000), eval_every=0,
                                eval_episodes=10)
        live = LivePlot(title=f"{v['student_net']} student"
                              f"{' at ' + v['student_layers'] if v['student_layers'] else ''}, {v['loss']} loss"
                              f"{', ' + v['method'] if method else ''}",
                        interactive=self.interactive)
        self.card = distill(config, self.out, callback=live)
        if not self.interactive:
            live.static().show()
        return self.card
