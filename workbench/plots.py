"""Plotly figures, each a function of data (a DataFrame) returning a Figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .nets import PRESET_FRACTIONS
from .results import wide
from .trace import _PALETTE, agent_view, upscale

# Rusu et al. 2016, geometric mean of student score as % of teacher over 10 Atari games (ANCHORS.md).
RUSU_POINTS = pd.DataFrame({"net": ["net1", "net2", "net3"], "compression": [0.253, 0.0669, 0.0366],
                            "pct_of_teacher": [108.3, 101.7, 83.9]})
LOSS_COLORS = {"kl": "#1f77b4", "nll": "#ff7f0e", "mse": "#2ca02c"}


def method_label(loss: str, beta="1") -> str:
    """'kl' for Rusu's teacher-driven collection, 'kl, beta=0' (student-driven) or 'kl, beta=linear:1:0' otherwise."""
    beta = "1" if beta is None or (isinstance(beta, float) and np.isnan(beta)) else str(beta)
    return loss if beta in ("1", "1.0") else f"{loss}, beta={beta}"


def pareto_front(points: pd.DataFrame) -> pd.DataFrame:
    """Points not beaten by any other on both size (smaller is better) and % of teacher (higher is better)."""
    pts = points.sort_values(["compression", "pct_of_teacher"], ascending=[True, False])
    front, best = [], -np.inf
    for _, row in pts.iterrows():
        if row["pct_of_teacher"] > best:
            front.append(row)
            best = row["pct_of_teacher"]
    return pd.DataFrame(front)


def compression_figure(results: pd.DataFrame, title: str = "Compression vs performance",
                       reference: pd.DataFrame | None = None) -> go.Figure:
    """x: student params / teacher params (log); y: % of teacher, mean and std over seeds; one trace per loss.
    ``reference``: the committed per-game table (``results.more_data_table`` or its CSV: a row per game, net3 and
    tiny columns of % of teacher over seeds) drawn beside them, one faint line per game, so that a few live students
    are seen against where size costs on every shipped teacher."""
    df = results.dropna(subset=["pct_of_teacher"]).copy()
    df["method"] = [method_label(loss, beta) for loss, beta in zip(df["loss"], df.get("beta", ["1"] * len(df)))]
    agg = (df.groupby(["method", "loss", "student_net", "compression"], dropna=False)["pct_of_teacher"]
             .agg(["mean", "std", "count"]).reset_index().fillna({"std": 0.0}))
    fig = go.Figure()
    for (method, loss), g in agg.groupby(["method", "loss"]):
        g = g.sort_values("compression")
        fig.add_trace(go.Scatter(
            x=g["compression"], y=g["mean"], mode="lines+markers", name=method,
            error_y=dict(type="data", array=g["std"], visible=True),
            line=dict(color=LOSS_COLORS.get(loss), dash=None if method == loss else "dash"),
            text=g["student_net"], hovertemplate="%{text}: %{x:.2%} of teacher params, %{y:.1f}% of return<extra>"
            + str(method) + "</extra>"))
    if len(agg):
        front = pareto_front(agg.rename(columns={"mean": "pct_of_teacher"}))
        fig.add_trace(go.Scatter(x=front["compression"], y=front["pct_of_teacher"], mode="lines",
                                 name="Pareto front", line=dict(color="black", dash="dot")))
    fig.add_trace(go.Scatter(x=RUSU_POINTS["compression"], y=RUSU_POINTS["pct_of_teacher"], mode="markers+text",
                             name="Rusu et al. 2016 (Atari, geo. mean)", text=RUSU_POINTS["net"],
                             textposition="top center", marker=dict(symbol="star", size=12, color="gray")))
    if reference is not None:
        games = reference[~reference["game"].astype(str).str.startswith("geometric")]
        for k, (_, row) in enumerate(games.iterrows()):
            nets = [n for n in ("net3", "tiny") if n in row and pd.notna(row[n])]
            fig.add_trace(go.Scatter(
                x=[PRESET_FRACTIONS[n] for n in nets], y=[row[n] for n in nets], mode="lines+markers+text",
                name="committed per-game table (3 seeds, 100 episodes)", legendgroup="committed", showlegend=k == 0,
                text=["", row["game"]], textposition="middle right", textfont=dict(size=9, color="gray"),
                line=dict(color="lightgray", width=1), marker=dict(size=6, color="darkgray"),
                hovertemplate=f"{row['game']}, %{{x:.1%}} of teacher params: %{{y:.1f}}% of return<extra></extra>"))
    fig.add_hline(y=100, line=dict(color="gray", dash="dash"), annotation_text="teacher")
    fig.update_layout(title=title, xaxis=dict(title="student params / teacher params", type="log", tickformat=".1%"),
                      yaxis=dict(title="% of teacher return"), template="plotly_white")
    return fig


# --- frame-by-frame views (data: a workbench.trace.Trace) -------------------------------------------------------
TEACHER_COLOR, STUDENT_COLOR, DISAGREE_COLOR = "#1f77b4", "#ff7f0e", "#d62728"


def png(img: np.ndarray) -> bytes:
    """RGB uint8 [H, W, 3] -> PNG bytes."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(np.asarray(img, np.uint8)[..., ::-1]))
    if not ok:
        raise ValueError("could not encode the image as PNG")
    return buf.tobytes()


def image_trace(img: np.ndarray, **kwargs) -> go.Image:
    """A plotly Image from an RGB array, sent as a PNG (a fraction of the size of a nested list of pixels)."""
    import base64

    return go.Image(source="data:image/png;base64," + base64.b64encode(png(img)).decode(), **kwargs)


def image_figure(images: list, titles: list[str], height: int = 300) -> go.Figure:
    """Several RGB images in one row (a static fallback for Image widgets)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(images), subplot_titles=titles, horizontal_spacing=0.03)
    for k, img in enumerate(images):
        fig.add_trace(image_trace(img), 1, k + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=height, margin=dict(t=40, b=10, l=10, r=10))
    return fig


def episode_figure(trace, t: int) -> go.Figure:
    """One static picture of frame t: the screen, the agent's view, both policies' bars and the timeline."""
    from plotly.subplots import make_subplots

    names = list(trace.action_names)
    fig = make_subplots(rows=2, cols=3, specs=[[{}, {}, {}], [{"colspan": 3}, None, None]],
                        subplot_titles=["as a human sees it", "as the agent sees it", "action probabilities",
                                        "along the episode"], row_heights=[0.6, 0.4], vertical_spacing=0.12)
    fig.add_trace(image_trace(trace.screens[t]), 1, 1)
    fig.add_trace(image_trace(agent_view(trace.obs[t], trace.family)), 1, 2)
    first, second = trace.names
    fig.add_trace(go.Bar(x=names, y=trace.teacher_probs[t], name=first, marker_color=TEACHER_COLOR), 1, 3)
    fig.add_trace(go.Bar(x=names, y=trace.student_probs[t], name=second, marker_color=STUDENT_COLOR), 1, 3)
    steps = np.arange(trace.length)
    fig.add_trace(go.Scatter(x=steps, y=trace.agree.astype(float), mode="lines", name="agree (1) / disagree (0)",
                             line=dict(color="gray", shape="hv")), 2, 1)
    d = trace.disagreements
    fig.add_trace(go.Scatter(x=d, y=np.zeros(len(d)), mode="markers", name="disagreement",
                             marker=dict(color=DISAGREE_COLOR, symbol="x")), 2, 1)
    fig.add_trace(go.Bar(x=steps, y=trace.rewards, name="reward", marker_color="#2ca02c"), 2, 1)
    fig.add_vline(x=t, line=dict(color="black"), row=2, col=1)
    for c in (1, 2):
        fig.update_xaxes(visible=False, row=1, col=c)
        fig.update_yaxes(visible=False, row=1, col=c)
    fig.update_yaxes(range=[0, 1], row=1, col=3)
    s = trace.summary()
    fig.update_layout(barmode="group", height=620, template="plotly_white",
                      title=f"{trace.env_id} frame {t}/{trace.length - 1} "
                            f"({first if trace.driver == 'teacher' else second} driving): "
                            f"{first} {names[trace.teacher_actions[t]]}, {second} {names[trace.student_actions[t]]}; "
                            f"agreement {s['agreement']:.1%} over the episode")
    return fig


def confusion_figure(matrix: np.ndarray, action_names, title: str = "Teacher action x student action") -> go.Figure:
    """Heatmap of counts (rows: teacher's action, columns: student's), with row-normalised shares on hover."""
    m = np.asarray(matrix, dtype=np.float64)
    share = m / np.maximum(m.sum(1, keepdims=True), 1)
    names = list(action_names)
    fig = go.Figure(go.Heatmap(z=share, x=names, y=names, colorscale="Blues", zmin=0, zmax=1,
                               text=m.astype(int), texttemplate="%{text}", customdata=share,
                               hovertemplate="teacher %{y}, student %{x}: %{text} states (%{z:.1%} of row)<extra></extra>"))
    fig.update_layout(title=title, xaxis=dict(title="student's action"),
                      yaxis=dict(title="teacher's action", autorange="reversed"), template="plotly_white", height=420)
    return fig


def overlay(frame_rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """A [h, w] map in [0, 1] laid over an RGB frame (resized to the frame) in red."""
    import cv2

    h, w = frame_rgb.shape[:2]
    hm = cv2.resize(np.asarray(heat, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
    red = np.zeros_like(frame_rgb, dtype=np.float32)
    red[..., 0] = 255
    out = frame_rgb.astype(np.float32) * (1 - alpha * hm) + red * alpha * hm
    return np.clip(out, 0, 255).astype(np.uint8)


def saliency_figure(frame_rgb: np.ndarray, teacher_map: np.ndarray, student_map: np.ndarray,
                    title: str = "Perturbation saliency (Greydanus et al. 2018)") -> go.Figure:
    """Teacher's and student's saliency on the same frame, side by side, overlaid in red."""
    fig = image_figure([overlay(frame_rgb, teacher_map), overlay(frame_rgb, student_map)],
                       ["teacher: where a blur changes its policy", "student: the same for the student"], height=360)
    fig.update_layout(title=title, margin=dict(t=70))
    return fig


def branch_figure(result: dict, action_names, every: int = 1, max_frames: int = 10) -> go.Figure:
    """Two filmstrips from the same frame: the teacher's path and the student's, marking where they part."""
    from plotly.subplots import make_subplots

    names = list(action_names)
    n = min(max_frames, max(len(result["teacher"]["actions"]), len(result["student"]["actions"])))
    idx = list(range(0, n * every, every))
    fig = make_subplots(rows=2, cols=len(idx), horizontal_spacing=0.005, vertical_spacing=0.08,
                        subplot_titles=[f"+{k}" for k in idx] + [""] * len(idx))
    for row, who in ((1, "teacher"), (2, "student")):
        path = result[who]
        for c, k in enumerate(idx):
            if k < len(path["screens"]):
                fig.add_trace(image_trace(path["screens"][k], hovertemplate=f"{who} +{k}: {names[path['actions'][k]]}"
                                       "<extra></extra>"), row, c + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    part = result["part"]
    where = "never part" if part is None else f"part after {part} step(s)"
    tr, sr = result["teacher"]["rewards"].sum(), result["student"]["rewards"].sum()
    fig.update_layout(title=f"From frame {result['t']}: top the teacher plays on, bottom the student; they {where} "
                            f"(reward {tr:g} vs {sr:g})", height=320, margin=dict(t=70, b=10, l=10, r=10))
    return fig


DISTILL_KEYS = ("losses/distill", "heldout/agreement", "charts/student_return")
TRAIN_KEYS = ("charts/episodic_return", "losses/value_loss", "losses/entropy")


def live_figure(rows: list[dict], keys=DISTILL_KEYS, x_title: str = "env steps") -> go.Figure:
    """Training curves from metrics rows (one subplot per key present); the static twin of LivePlot. ``x_title``
    names what a row's step counts (a student trained on a distilled set counts updates)."""
    from plotly.subplots import make_subplots

    keys = [k for k in keys if any(k in r for r in rows)] or list(keys)
    fig = make_subplots(rows=1, cols=len(keys), subplot_titles=keys)
    for c, k in enumerate(keys):
        pts = [(r["step"], r[k]) for r in rows if r.get(k) is not None]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=k), 1, c + 1)
        fig.update_xaxes(title_text=x_title, row=1, col=c + 1)
    fig.update_layout(height=320, showlegend=False, template="plotly_white", margin=dict(t=40, b=40, l=50, r=10))
    return fig


STUDENT_COLORS = {"net1": "#9467bd", "net2": "#8c564b", "net3": "#1f77b4", "tiny": "#d62728"}


def realtime_figure(rows: list[dict], card: dict | None = None, title: str = "Real-time vs train-then-distill") -> go.Figure:
    """Returns on one wall-clock axis: the teacher as it trains, each real-time student on its own clock
    (teacher time + its updates), and each sequential student (after the whole teacher); below, the gap
    teacher minus student at each evaluation. A dotted line marks 95% of the final teacher where ``card`` is given."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.06,
                        subplot_titles=("return", "gap: teacher - real-time student"))
    live = [r for r in rows if r.get("teacher_return") is not None]
    fig.add_trace(go.Scatter(x=[r["teacher_seconds"] for r in live], y=[r["teacher_return"] for r in live],
                             mode="lines+markers", name="teacher (training)", line=dict(color="black")), 1, 1)
    names = sorted({k.split("/")[0] for r in rows for k in r if k.endswith("/return") and k != "teacher_return"})
    for name in names:
        color = STUDENT_COLORS.get(name)
        pts = [(r[f"{name}/seconds"], r[f"{name}/return"]) for r in rows if r.get(f"{name}/return") is not None]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                 name=f"{name} real-time", line=dict(color=color)), 1, 1)
        seq = [(r[f"{name}/seq_seconds"], r[f"{name}/seq_return"]) for r in rows if f"{name}/seq_return" in r]
        if seq:
            fig.add_trace(go.Scatter(x=[p[0] for p in seq], y=[p[1] for p in seq], mode="lines+markers",
                                     name=f"{name} sequential", line=dict(color=color, dash="dash")), 1, 1)
        gap = [(r["teacher_seconds"], r["teacher_return"] - r[f"{name}/return"]) for r in live
               if r.get(f"{name}/return") is not None]
        fig.add_trace(go.Bar(x=[p[0] for p in gap], y=[p[1] for p in gap], name=f"gap {name}",
                             marker_color=color, showlegend=False), 2, 1)
    if card:
        fig.add_hline(y=card["target_return"], line_dash="dot", line_color="gray", row=1, col=1,
                      annotation_text=f"{100 * card['threshold']:.0f}% of final teacher")
        fig.add_vline(x=card["teacher"]["teacher_seconds"], line_dash="dot", line_color="black", row=1, col=1,
                      annotation_text="teacher done")
    fig.update_xaxes(title_text="wall-clock seconds (evaluation time left out)", row=2, col=1)
    fig.update_layout(title=title, height=560, template="plotly_white", barmode="group",
                      margin=dict(t=60, b=50, l=50, r=10))
    return fig


def multitask_figure(card: dict, title: str = "One student, many games: % of each game's own teacher") -> go.Figure:
    """Bars per game (% of its teacher, same eval seeds), a line at 100% and the geometric mean."""
    games = list(card["per_game"])
    pct = [card["per_game"][g]["pct_of_teacher"] for g in games]
    text = [f"{card['per_game'][g]['return_mean']:.1f} / {card['per_game'][g]['teacher_return_mean']:.1f}" for g in games]
    fig = go.Figure(go.Bar(x=[g.split("/")[-1] for g in games], y=pct, text=text, textposition="outside",
                           marker_color="#1f77b4", name="% of teacher", hovertemplate="%{x}: %{y:.1f}%<extra></extra>"))
    fig.add_hline(y=100, line_dash="dot", line_color="gray", annotation_text="teacher")
    if card.get("geomean_pct_of_teacher") is not None:
        fig.add_hline(y=card["geomean_pct_of_teacher"], line_color="#d62728",
                      annotation_text=f"geometric mean {card['geomean_pct_of_teacher']:.1f}%")
    fig.update_layout(title=f"{title}<br><sup>student {card['params']:,} params = "
                            f"{100 * card['compression']:.1f}% of its teachers' {card['teachers_params_sum']:,}</sup>",
                      yaxis_title="% of teacher (student / teacher return)", template="plotly_white", height=420)
    return fig


def rusu_heatmap(table: pd.DataFrame, title: str = "% of teacher per game and student size") -> go.Figure:
    """One panel per loss: games (and their geometric mean) x student sizes, coloured by % of teacher around 100;
    Rusu et al.'s Dist-KL geometric means as the KL panel's last row. ``table``: ``results.rusu_table``."""
    from plotly.subplots import make_subplots

    losses = [lo for lo in ("kl", "nll", "mse") if lo in set(table["loss"])]
    share = table.groupby("student_net")["compression"].mean()
    fig = make_subplots(rows=1, cols=len(losses), subplot_titles=[lo.upper() for lo in losses],
                        horizontal_spacing=0.12)
    for i, loss in enumerate(losses, start=1):
        w = wide(table, loss)
        cols = [f"{c} ({share.get(c, np.nan):.1%})" for c in w.columns]
        fig.add_trace(go.Heatmap(
            z=w.values, x=cols, y=list(w.index), zmid=100, zmin=50, zmax=150, colorscale="RdBu",
            text=[[("" if np.isnan(v) else f"{v:.1f}") for v in row] for row in w.values], texttemplate="%{text}",
            showscale=i == len(losses), colorbar=dict(title="% of teacher"),
            hovertemplate="%{y}, %{x}: %{z:.1f}% of teacher<extra>" + loss + "</extra>"), row=1, col=i)
        fig.update_yaxes(autorange="reversed", showticklabels=i == 1, row=1, col=i)
    fig.update_layout(title=title, template="plotly_white", height=140 + 40 * table["game"].nunique(),
                      width=max(700, 330 * len(losses)))
    return fig


def more_data_figure(table: pd.DataFrame, title: str = "Each game at the recipe that copies it: % of teacher") -> go.Figure:
    """Bars per game and student size, the geometric means beside them, and each size's target as a dashed line.
    ``table``: ``results.more_data_table``; each game's label carries its recipe, a bar's hover its seeds."""
    nets = [c for c in table.columns if f"{c}_seeds" in table.columns]
    rows = table[~table["game"].str.startswith("target")]
    targets = table[table["game"].str.startswith("target")]
    recipe = rows["recipe"].fillna("")
    labels = [f"{g.replace(' without ', '<br>without ')}<br><sub>{r.replace('; ', '<br>')}</sub>"
              for g, r in zip(rows["game"], recipe)]
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    fig = go.Figure()
    for net, colour in zip(nets, colours):
        fig.add_trace(go.Bar(
            x=labels, y=rows[net], name=net, marker_color=colour,
            text=[f"{v:.1f}" for v in rows[net]], textposition="outside",
            customdata=rows[f"{net}_seeds"].astype(str),
            hovertemplate="%{x}<br>" + net + ": %{y:.1f}% of teacher, %{customdata} seeds<extra></extra>"))
        if not targets.empty and pd.notna(targets[net].iloc[0]):  # the line, and a legend entry naming it
            target = float(targets[net].iloc[0])
            fig.add_hline(y=target, line_dash="dash", line_color=colour)
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(dash="dash", color=colour),
                                     name=f"{net} target {target:.0f}%"))
    fig.update_layout(title=title, barmode="group", template="plotly_white", height=500,
                      yaxis_title="% of teacher (student / teacher return)", margin=dict(b=120))
    return fig


def soft_view(obs: np.ndarray, family: str, scale: int = 8) -> np.ndarray:
    """A picture of a state that may lie between observations: a learned MinAtar state's channels are shades, not
    on/off, so each channel's colour is laid on in proportion to its value (a real state looks as ``agent_view``
    draws it, but for overlaps)."""
    obs = np.asarray(obs, dtype=np.float64)
    if family != "minatar":
        return agent_view(obs.astype(np.uint8) if family == "ale" else obs, family)
    img = np.zeros((*obs.shape[1:], 3))
    for ch in range(obs.shape[0]):
        img += np.clip(obs[ch], 0, 1)[..., None] * np.asarray(_PALETTE[ch % len(_PALETTE)], np.float64)
    return upscale(np.clip(img, 0, 255).astype(np.uint8), scale)


def states_figure(states, bars: list[tuple[str, np.ndarray, str]], action_names, family: str, titles=None,
                  cols: int = 8, title: str = "") -> go.Figure:
    """States as pictures (``soft_view``), each above grouped bars of action probabilities: ``bars`` holds
    (name, probs [N, A], colour) per policy or label."""
    from plotly.subplots import make_subplots

    n = len(states)
    blocks = -(-n // cols)
    padded = list(titles or []) + [""] * (blocks * cols)
    # Subplots run row by row: a row of pictures (with their titles), then a row of bars (none).
    fig = make_subplots(rows=2 * blocks, cols=cols, vertical_spacing=0.06, horizontal_spacing=0.02,
                        row_heights=[0.7, 0.3] * blocks,
                        subplot_titles=[t for b in range(blocks) for t in padded[b * cols:(b + 1) * cols] + [""] * cols])
    names = list(action_names)
    for i in range(n):
        r, c = 2 * (i // cols) + 1, i % cols + 1
        fig.add_trace(image_trace(soft_view(np.asarray(states[i]), family)), r, c)
        for label, probs, colour in bars:
            fig.add_trace(go.Bar(x=names, y=probs[i], name=label, marker_color=colour, legendgroup=label,
                                 showlegend=i == 0 and len(bars) > 1,
                                 hovertemplate=f"{label}, state {i}: " + "%{x} %{y:.2f}<extra></extra>"), r + 1, c)
        fig.update_xaxes(visible=False, row=r, col=c)
        fig.update_yaxes(visible=False, row=r, col=c)
        fig.update_yaxes(range=[0, 1], showticklabels=c == 1, row=r + 1, col=c)
        fig.update_xaxes(showticklabels=len(names) <= 6, tickfont=dict(size=8), row=r + 1, col=c)
    fig.update_layout(template="plotly_white", height=330 * blocks, barmode="group",
                      margin=dict(t=70, b=20, l=30, r=10), title=title)
    return fig


def distilled_set_figure(ds, action_names, n: int = 16, cols: int = 8, title: str | None = None) -> go.Figure:
    """The first ``n`` states of a distilled set as pictures, each above the action probabilities its label gives
    (softmax(label / tau)): what a student trained on the set is told to do there."""
    n = min(n, ds.size)
    meta = ds.meta
    return states_figure(ds.states[:n].numpy(), [("label", softmax_rows(ds.labels[:n].numpy() / ds.tau),
                                                  TEACHER_COLOR)], action_names, ds.env.family, cols=cols,
                         title=title or f"{meta['builder']} set of {ds.size} states for {meta['teacher']} "
                                        f"({meta['labels']}; the first {n})")


def teaching_figure(result: dict, direction: str, action_names, cols: int = 4) -> go.Figure:
    """The states where one learner of a dual pair teaches the other most (``distill.dual.teaching_states``): each
    with both learners' action probabilities, its weight and both values in its title."""
    d = result[direction]
    teacher, student = direction.split("->")
    titles = [f"w {w:.2f}: V_a {a:.1f}, V_b {b:.1f}" for w, a, b in zip(d["weight"], d["value_a"], d["value_b"])]
    return states_figure(d["states"], [("learner a", d["probs_a"], TEACHER_COLOR),
                                       ("learner b", d["probs_b"], STUDENT_COLOR)], action_names,
                         result["env_spec"].family, titles=titles, cols=cols,
                         title=f"Where learner {teacher} teaches learner {student} most: the largest weights "
                               f"exp(beta (V_{teacher} - V_{student})); learner {teacher}'s value is above "
                               f"{student}'s on {d['share_peer_better']:.0%} of the states")


def dual_curves_figure(runs: dict[str, list[dict]], title: str = "Two learners teaching each other, and without"
                       ) -> go.Figure:
    """Training return against env steps per learner, every condition on one axis: ``runs`` maps a condition's
    label to its pair's metrics rows (``charts/episodic_return_a`` / ``_b``) or a single learner's
    (``charts/episodic_return``)."""
    fig = go.Figure()
    dashes = {"a": "solid", "b": "dot", "": "dash"}
    palette = ["#1f77b4", "#7f7f7f", "#d62728", "#2ca02c", "#9467bd"]
    for k, (label, rows) in enumerate(runs.items()):
        for n in ("a", "b", ""):
            key = f"charts/episodic_return_{n}" if n else "charts/episodic_return"
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines",
                                         name=f"{label}: learner {n}" if n else label,
                                         line=dict(color=palette[k % len(palette)], dash=dashes[n])))
    fig.update_layout(title=title, xaxis_title="env steps per learner", yaxis_title="training return",
                      template="plotly_white", height=420)
    return fig


def dual_weights_figure(weights_over_time: list[dict], title: str = "The distillation weights over training"
                        ) -> go.Figure:
    """Per learner (as the student of its peer): the mean raw weight of each distillation step (log scale; 1 where
    the two values agree) and the largest normalised one (how much of the batch one state carries)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("mean weight exp(beta (V_peer - V_self))",
                                                        "largest share of the batch one state carries"))
    for n, colour in (("a", TEACHER_COLOR), ("b", STUDENT_COLOR)):
        mine = [w for w in weights_over_time if w["learner"] == n]
        x = [w["env_steps"] for w in mine]
        fig.add_trace(go.Scatter(x=x, y=[w["w_mean"] for w in mine], mode="lines", name=f"learner {n} (student)",
                                 line=dict(color=colour)), 1, 1)
        fig.add_trace(go.Scatter(x=x, y=[w["w_top"] for w in mine], mode="lines", showlegend=False,
                                 line=dict(color=colour)), 1, 2)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title="env steps per learner")
    fig.update_layout(title=title, template="plotly_white", height=380)
    return fig


def softmax_rows(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a numpy array (stable)."""
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


BUILDER_COLORS = {"random": "#7f7f7f", "coreset": "#1f77b4", "trajectory": "#d62728", "evolved": "#2ca02c"}


def dataset_size_figure(rows: pd.DataFrame, title: str = "A fresh student trained only on N states: % of teacher"
                        ) -> go.Figure:
    """% of teacher against set size, a line per builder and a panel per game: the mean over seeds, the bars from
    the lowest to the highest seed. ``rows``: one per (game, builder, size, seed) with ``pct_of_teacher``."""
    from plotly.subplots import make_subplots

    games = list(dict.fromkeys(rows["game"]))
    fig = make_subplots(rows=1, cols=len(games), subplot_titles=games, shared_yaxes=True, horizontal_spacing=0.02)
    agg = (rows.groupby(["game", "builder", "size"])["pct_of_teacher"].agg(["mean", "min", "max", "count"])
           .reset_index())
    for k, game in enumerate(games):
        for builder, colour in BUILDER_COLORS.items():
            g = agg[(agg["game"] == game) & (agg["builder"] == builder)].sort_values("size")
            if g.empty:
                continue
            fig.add_trace(go.Scatter(
                x=g["size"], y=g["mean"], mode="lines+markers", name=builder, legendgroup=builder,
                showlegend=k == 0, line=dict(color=colour),
                error_y=dict(type="data", symmetric=False, array=g["max"] - g["mean"], arrayminus=g["mean"] - g["min"]),
                customdata=g["count"],
                hovertemplate=builder + ", N=%{x}: %{y:.1f}% (%{customdata} seeds)<extra></extra>"),
                1, k + 1)
        fig.update_xaxes(type="log", title="states in the set", row=1, col=k + 1)
    fig.add_hline(y=100, line_dash="dot", line_color="black")
    fig.update_yaxes(title="% of teacher", row=1, col=1)
    fig.update_layout(title=title, template="plotly_white", height=420)
    return fig


def stage_mix_figure(card: dict, title: str = "The mix each stage trained on, and the student's deficit before it"
                     ) -> go.Figure:
    """A balanced run, stage by stage (``distill.balanced.stage_table``): left, each stage's share of updates per
    domain (stage 0: the teacher's natural mix; tail domains hatched); right, the deficit per domain the stage's mix
    was set from."""
    from plotly.subplots import make_subplots

    from .distill.balanced import stage_table

    t = stage_table(card)
    names = list(dict.fromkeys(t["domain"]))
    colours = {n: f"rgb{tuple(int(x) for x in _PALETTE[i % len(_PALETTE)])}" for i, n in enumerate(names)}
    fig = make_subplots(rows=1, cols=2, subplot_titles=("mix of updates per stage", "deficit before the stage"),
                        horizontal_spacing=0.08)
    for name in names:
        d = t[t["domain"] == name]
        fig.add_trace(go.Bar(x=d["stage"], y=d["mix"], name=name, legendgroup=name, marker_color=colours[name],
                             marker_pattern_shape=["/" if x else "" for x in d["tail"]],
                             hovertemplate=name + ", stage %{x}: %{y:.1%} of updates<extra></extra>"), 1, 1)
        known = d.dropna(subset=["deficit"])
        fig.add_trace(go.Scatter(x=known["stage"], y=known["deficit"], mode="lines+markers", name=name,
                                 legendgroup=name, showlegend=False, line=dict(color=colours[name]),
                                 hovertemplate=name + ", before stage %{x}: %{y:.3f}<extra></extra>"), 1, 2)
    deficit = card["balanced"]["deficit"]
    fig.update_xaxes(title="stage", dtick=1)
    fig.update_yaxes(title="share", tickformat=".0%", row=1, col=1)
    fig.update_yaxes(title="1 - recall" if deficit == "recall" else "KL(teacher || student)", row=1, col=2)
    fig.update_layout(barmode="stack", template="plotly_white", height=400, title=title)
    return fig


def domain_recall_figure(reports: dict[str, dict], title: str = "Recall of the teacher's action per domain "
                         "(held-out teacher states)") -> go.Figure:
    """Per-domain recall of several students on the same held-out states (``distill.balanced.domain_report``), a
    bar group per domain labelled with its number of held-out states; each student's balanced accuracy in its name."""
    fig = go.Figure()
    for label, r in reports.items():
        x = [f"{n} ({k})" for n, k in zip(r["names"], r["states"])]
        acc = r["balanced_accuracy"]
        fig.add_trace(go.Bar(x=x, y=r["recall"], name=f"{label}: balanced accuracy "
                             f"{'-' if acc is None else f'{acc:.3f}'}",
                             hovertemplate=label + ", %{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(barmode="group", template="plotly_white", height=380, title=title,
                      yaxis=dict(title="recall", range=[0, 1]), xaxis_title="domain (held-out states)")
    return fig


def tail_examples_figure(examples: dict, action_names, family: str, n: int = 16, cols: int = 8, tau: float = 1.0,
                         title: str = "States the teacher generated for the tail, from restored emulator states"
                         ) -> go.Figure:
    """The first ``n`` of a balanced run's teacher-generated states (``distill.balanced.load_tail_examples``), each
    above the teacher's action probabilities there (softmax of its outputs at temperature ``tau``, the run's),
    titled with its stage and domain."""
    n = min(n, len(examples["obs"]))
    names = examples["names"]
    titles = [f"stage {int(s)}: {names[int(d)]}" for s, d in zip(examples["stage"][:n], examples["domain"][:n])]
    return states_figure(examples["obs"][:n], [("teacher", softmax_rows(examples["teacher"][:n] / tau), TEACHER_COLOR)],
                         action_names, family, titles=titles, cols=cols, title=title)
