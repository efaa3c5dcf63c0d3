"""Append one row per Atari Breakout student run to ``data/results/breakout_fire_probe.csv``.

A row holds the run's greedy card figures and two more evaluations on the card's 30 seeds: with FIRE pressed for
the student after each lost life (how it plays apart from relaunching the ball), and under Nature's epsilon 0.05.
Percentages are of the teacher's row in the same file (the first row), measured the same three ways.

    .venv/bin/python scripts/breakout_probe_row.py runs/breakout-400k-tau1-tiny-s1 [RUN ...]

A run already in the file is measured again and its row replaced; the file is rewritten atomically.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch

from workbench.evaluate import evaluate
from workbench.results import replace_rows
from workbench.runs import Run, atomic_write_bytes, load_policy

CSV = Path(__file__).resolve().parents[1] / "data" / "results" / "breakout_fire_probe.csv"


def row(run_dir: str, teacher: pd.Series) -> dict:
    run = Run(run_dir)
    card, config = run.card, run.config
    if card.get("env_id") != "ALE/Breakout-v5" or card.get("algo") != "distill":
        raise ValueError(f"{run_dir} is not a distilled Atari Breakout student (env {card.get('env_id')!r}, "
                         f"algo {card.get('algo')!r}); give a folder that `workbench distill --teacher "
                         "atari-breakout` wrote")
    policy, settings = load_policy(run_dir), config["env_spec"]["settings"]
    n, seed = card["return_n"], card["eval_seed"]
    fire = evaluate(policy, card["env_id"], n, seed, settings, fire_after_life_loss=True)
    eps = evaluate(policy, card["env_id"], n, seed, settings, epsilon=0.05)
    return {
        "run": run_dir, "student_net": config.get("student_net"), "loss": card["loss"], "tau": card["tau"],
        "beta": card["beta"], "seed": config["seed"], "env_steps": card["env_steps"],
        "agreement": round(card["agreement"], 4),
        "greedy_return": card["return_mean"], "greedy_stalled": card.get("stalled_episodes"),
        "fire_return": fire.mean, "fire_std": fire.std, "eps005_return": eps.mean,
        "greedy_pct": 100 * card["return_mean"] / teacher["greedy_return"],
        "fire_pct": 100 * fire.mean / teacher["fire_return"], "eps005_pct": 100 * eps.mean / teacher["eps005_return"],
    }


def main(runs: list[str]) -> int:
    if not runs:
        print(__doc__, file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # as `workbench --threads 1 evaluate`, which made the earlier rows
    table = pd.read_csv(CSV, dtype={"beta": str})
    teacher = table[table["student_net"] == "teacher"].iloc[0]
    for run_dir in runs:
        new = row(run_dir.rstrip("/"), teacher)
        table = replace_rows(table, pd.DataFrame([new]), ["run"])
        print({k: round(v, 1) if isinstance(v, float) else v for k, v in new.items()})
    atomic_write_bytes(CSV, table.to_csv(index=False).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
