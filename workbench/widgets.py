"""ipywidgets views over traces and runs. Each view has ``.widget`` (for JupyterLab) and ``.static()`` (a plotly
figure that an exported report shows where widgets cannot run); :func:`workbench.notebook.show` picks.

Animation changes an Image widget's ``value`` in place (no re-display, no flicker).
"""

from __future__ import annotations

import numpy as np

from . import plots
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
        self.info.value = (f"frame {t}/{tr.length - 1} &nbsp; teacher: <b>{names[tr.teacher_actions[t]]}</b> &nbsp; "
                           f"student: <b>{names[tr.student_actions[t]]}</b> ({mark}) &nbsp; "
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

    def __init__(self, keys=plots.DISTILL_KEYS, title: str = "", interactive: bool = True):
        self.keys, self.rows, self.title, self.interactive = tuple(keys), [], title, interactive
        self.figure = None
        if interactive:
            import plotly.graph_objects as go
            from IPython.display import display

            self.figure = go.FigureWidget(plots.live_figure([], self.keys))
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
        fig = plots.live_figure(self.rows, self.keys)
        fig.update_layout(title=self.title)
        return fig


class DistillForm:
    """A form for one distillation run (teacher, student size and shape, loss, tau, beta, steps, seed) with a live
    plot. The shape field takes ``CONV:HIDDEN`` layer widths at the size's parameter count (``8:16``: one 8-channel
    conv, 16 hidden units), or stays empty for the size preset's own shape.

    ``run()`` distils with the form's current values and returns the card; the **Distil** button does the same.
    """

    def __init__(self, teacher: str = "minatar-breakout", student_net: str = "net3", loss: str = "kl",
                 tau: float = 0.01, beta: str = "1", total_steps: int = 20_000, seed: int = 0,
                 out_dir: str = "runs/distill", preset: str = "demo", interactive: bool = True, layers: str = ""):
        import ipywidgets as W

        from .teachers import list_teachers

        shipped = list_teachers()
        names = list(shipped["name"]) if len(shipped) else []
        self.preset, self.out_dir, self.interactive = preset, out_dir, interactive
        style = {"description_width": "110px"}
        self.teacher = W.Combobox(value=teacher, options=names, description="teacher", style=style)
        self.student_net = W.Dropdown(options=["net1", "net2", "net3", "tiny"], value=student_net,
                                      description="student size", style=style)
        self.layers = W.Text(value=layers or "", placeholder="the size's own, or e.g. 8:16", description="shape",
                             style=style)
        self.loss = W.ToggleButtons(options=["nll", "mse", "kl"], value=loss, description="loss", style=style)
        self.tau = W.FloatLogSlider(value=tau, base=10, min=-3, max=1, description="KL tau", style=style)
        self.beta = W.Dropdown(options=sorted({"1", "0", "linear:1:0", beta}), value=beta,
                               description="beta (teacher acts)", style=style)
        self.total_steps = W.IntText(value=total_steps, description="env steps", style=style)
        self.seed = W.IntText(value=seed, description="seed", style=style)
        self.button = W.Button(description="Distil", button_style="primary", icon="play")
        self.output = W.Output()
        self.button.on_click(lambda _: self._run_into_output())
        self.widget = W.VBox([W.HBox([W.VBox([self.teacher, self.student_net, self.layers, self.loss, self.tau]),
                                      W.VBox([self.beta, self.total_steps, self.seed, self.button])]), self.output])
        self.card, self.out = None, None

    def values(self) -> dict:
        return {"teacher": self.teacher.value, "student_net": self.student_net.value,
                "layers": self.layers.value.strip() or None, "loss": self.loss.value, "tau": float(self.tau.value),
                "beta": self.beta.value, "total_steps": int(self.total_steps.value), "seed": int(self.seed.value)}

    def _run_into_output(self) -> None:
        self.output.clear_output()
        with self.output:
            self.run()

    def run(self) -> dict:
        from pathlib import Path

        from .distill.loop import distill, distill_config
        from .nets import size_tag

        v = self.values()
        self.out = Path(self.out_dir) / f"{size_tag(v['student_net'], v['layers'])}-{v['loss']}-s{v['seed']}"
        config = distill_config(self.preset, v["teacher"], student_net=v["student_net"], student_layers=v["layers"],
                                loss=v["loss"], tau=v["tau"], beta=v["beta"], seed=v["seed"],
                                total_steps=v["total_steps"], log_every=max(v["total_steps"] // 10, 1_000),
                                eval_every=0, eval_episodes=10)
        live = LivePlot(title=f"{v['student_net']} student{' at ' + v['layers'] if v['layers'] else ''}, "
                              f"{v['loss']} loss", interactive=self.interactive)
        self.card = distill(config, self.out, callback=live)
        if not self.interactive:
            live.static().show()
        return self.card
