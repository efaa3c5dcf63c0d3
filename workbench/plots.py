"""Plotly figures, each a function of data (a DataFrame) returning a Figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

# Rusu et al. 2016, geometric mean of student score as % of teacher over 10 Atari games (ANCHORS.md).
RUSU_POINTS = pd.DataFrame({"net": ["net1", "net2", "net3"], "compression": [0.253, 0.0669, 0.0366],
                            "pct_of_teacher": [108.3, 101.7, 83.9]})
LOSS_COLORS = {"kl": "#1f77b4", "nll": "#ff7f0e", "mse": "#2ca02c"}


def pareto_front(points: pd.DataFrame) -> pd.DataFrame:
    """Points not beaten by any other on both size (smaller is better) and % of teacher (higher is better)."""
    pts = points.sort_values(["compression", "pct_of_teacher"], ascending=[True, False])
    front, best = [], -np.inf
    for _, row in pts.iterrows():
        if row["pct_of_teacher"] > best:
            front.append(row)
            best = row["pct_of_teacher"]
    return pd.DataFrame(front)


def compression_figure(results: pd.DataFrame, title: str = "Compression vs performance") -> go.Figure:
    """x: student params / teacher params (log); y: % of teacher, mean and std over seeds; one trace per loss."""
    df = results.dropna(subset=["pct_of_teacher"])
    agg = (df.groupby(["loss", "student_net", "compression"], dropna=False)["pct_of_teacher"]
             .agg(["mean", "std", "count"]).reset_index().fillna({"std": 0.0}))
    fig = go.Figure()
    for loss, g in agg.groupby("loss"):
        g = g.sort_values("compression")
        fig.add_trace(go.Scatter(
            x=g["compression"], y=g["mean"], mode="lines+markers", name=f"{loss}",
            error_y=dict(type="data", array=g["std"], visible=True), line=dict(color=LOSS_COLORS.get(loss)),
            text=g["student_net"], hovertemplate="%{text}: %{x:.2%} of teacher params, %{y:.1f}% of return<extra>"
            + str(loss) + "</extra>"))
    if len(agg):
        front = pareto_front(agg.rename(columns={"mean": "pct_of_teacher"}))
        fig.add_trace(go.Scatter(x=front["compression"], y=front["pct_of_teacher"], mode="lines",
                                 name="Pareto front", line=dict(color="black", dash="dot")))
    fig.add_trace(go.Scatter(x=RUSU_POINTS["compression"], y=RUSU_POINTS["pct_of_teacher"], mode="markers+text",
                             name="Rusu et al. 2016 (Atari, geo. mean)", text=RUSU_POINTS["net"],
                             textposition="top center", marker=dict(symbol="star", size=12, color="gray")))
    fig.add_hline(y=100, line=dict(color="gray", dash="dash"), annotation_text="teacher")
    fig.update_layout(title=title, xaxis=dict(title="student params / teacher params", type="log", tickformat=".1%"),
                      yaxis=dict(title="% of teacher return"), template="plotly_white")
    return fig
