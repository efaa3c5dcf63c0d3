"""Dual policy distillation benchmark: at equal env steps per learner, (a) one PPO learner with the workbench's own
defaults, (b) two independent learners (best of the two), (c) DPD with the paper's weighting, (d) DPD with the
authors' code's weighting. Final return (each learner's card: greedy, eval_episodes from env seed 10,000) and area
under the learning curve (the mean training return over the logged points). Resumable: a finished run is read, not
run again.

    python scripts/dual_bench.py --out runs/dual-bench --envs CartPole-v1 Acrobot-v1 --steps 100000
    python scripts/dual_bench.py --out runs/dual-bench --table
    python scripts/dual_bench.py --out runs/dual-bench --table runs/a/results.csv runs/b/results.csv  # several

A big and a small learner (``--width-b 0.25``: learner b at a quarter of a's width) runs the pair conditions
(independent, paper, code) in folders of their own, and the table gives each learner of such a pair apart.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from workbench.agents.ppo import ppo_config, train_ppo
from workbench.distill.dual import DualConfig, distill_dual
from workbench.hardware import set_threads

CONDITIONS = ("single", "independent", "paper", "code", "paper-k1")
# What each pair condition sets in DualConfig. paper-k1 is the paper's weighting distilling after every PPO update at
# the PPO step size (2.5e-4), where the authors' defaults (K = 5, 5e-5) give a 100k-step classic-control learner 9
# distillation steps against 768 PPO minibatch steps. Not run by default.
PAIRS = {"independent": dict(every=0), "paper": dict(weighting="paper"), "code": dict(weighting="code"),
         "paper-k1": dict(weighting="paper", every=1, distill_lr=2.5e-4)}


def curve_auc(folder: Path) -> float:
    """Mean training return over a run's logged points (the area under its learning curve per logged point)."""
    vals = [r.get("charts/episodic_return") for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def run_condition(out: Path, env: str, cond: str, seed: int, steps: int, episodes: int,
                  width_b: float = 1.0) -> list[dict]:
    folder = out / env.replace("/", "_") / (f"{cond}-s{seed}" + (f"-wb{width_b:g}" if width_b != 1.0 else ""))
    if cond == "single":
        if not (folder / "card.json").exists():
            train_ppo(ppo_config("demo", env, seed=seed, total_steps=steps, eval_episodes=episodes), folder,
                      resume=folder.exists(), progress_bar=False)
        learners = {"a": folder}
    else:
        if not (folder / "card.json").exists():
            config = DualConfig(env_id=env, seed=seed, total_steps=steps, eval_episodes=episodes, width_b=width_b,
                                **PAIRS[cond])
            distill_dual(config, folder, resume=folder.exists(), progress_bar=False)
        learners = {"a": folder / "a", "b": folder / "b"}
    rows = []
    for name, f in learners.items():
        card = json.loads((f / "card.json").read_text())
        rows.append({"env": env, "condition": cond, "seed": seed, "learner": name,
                     "width": 1.0 if name == "a" else width_b, "width_b": width_b, "env_steps": card["env_steps"],
                     "return_mean": card["return_mean"], "return_std": card["return_std"],
                     "return_n": card["return_n"], "auc": curve_auc(f), "wall_seconds": card["wall_seconds"]})
    return rows


def spread(x: np.ndarray) -> str:
    """Mean over seeds, and the seeds' 25th-75th percentiles and extremes: 'mean (q25-q75) [min, max]'."""
    q25, q75 = np.percentile(x, [25, 75])
    return f"{x.mean():.1f} ({q25:.1f} to {q75:.1f}) [{x.min():.1f}, {x.max():.1f}]"


def table(rows: list[dict]) -> None:
    """Per env and condition: final return and AUC, the best learner of a pair, mean and range over seeds."""
    pairs = [r for r in rows if float(r.get("width_b") or 1.0) != 1.0]
    rows = [r for r in rows if float(r.get("width_b") or 1.0) == 1.0]
    cells: dict = {}
    for r in rows:
        cells.setdefault((r["env"], r["condition"], int(r["seed"])), []).append(r)
    out: dict = {}
    for (env, cond, seed), rs in cells.items():
        best = max(rs, key=lambda r: float(r["return_mean"]))
        out.setdefault((env, cond), []).append((float(best["return_mean"]), float(best["auc"]),
                                                min(float(r["return_mean"]) for r in rs),
                                                np.mean([float(r["auc"]) for r in rs])))
    if out:
        print("| env | condition | seeds | final return, better learner | AUC, that learner | final return, worse "
              "learner | AUC, mean of the pair |")
        print("|---|---|---|---|---|---|---|")
    for (env, cond), v in sorted(out.items(), key=lambda kv: (kv[0][0], CONDITIONS.index(kv[0][1]))):
        f, a, w, m = map(np.array, zip(*v))
        print(f"| {env} | {cond} | {len(v)} | {spread(f)} | {spread(a)} | {spread(w)} | {spread(m)} |")
    if not pairs:
        return
    print("\n| env | condition | learner (width) | seeds | final return | AUC |")
    print("|---|---|---|---|---|---|")
    by: dict = {}
    for r in pairs:
        by.setdefault((r["env"], r["condition"], r["learner"], float(r["width"])), []).append(
            (float(r["return_mean"]), float(r["auc"])))
    for (env, cond, name, width), v in sorted(by.items(), key=lambda kv: (kv[0][0], CONDITIONS.index(kv[0][1]),
                                                                         kv[0][2])):
        f, a = map(np.array, zip(*v))
        print(f"| {env} | {cond} | {name} ({width:g}) | {len(v)} | {spread(f)} | {spread(a)} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--envs", nargs="+", default=["CartPole-v1", "Acrobot-v1"])
    p.add_argument("--conditions", nargs="+", default=list(CONDITIONS[:4]), choices=CONDITIONS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=100_000, help="env steps per learner")
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--width-b", type=float, default=1.0,
                   help="learner b's width (a's is 1): below 1, a big and a small learner; pair conditions only")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table", nargs="*", metavar="CSV", default=None,
                   help="print the table of the rows so far and stop; with CSV files, of their rows together (runs "
                        "split over processes, each with its own --out)")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.csv"
    rows = list(csv.DictReader(open(path))) if path.exists() else []
    if a.table is not None:
        table([r for f in a.table for r in csv.DictReader(open(f))] if a.table else rows)
        return
    set_threads(a.threads)
    conditions = [c for c in a.conditions if a.width_b == 1.0 or c != "single"]
    done = {(r["env"], r["condition"], int(r["seed"]), float(r.get("width_b") or 1.0)) for r in rows}
    for env in a.envs:
        for seed in a.seeds:
            for cond in conditions:
                if (env, cond, seed, a.width_b) in done:
                    continue
                rows += run_condition(out, env, cond, seed, a.steps, a.episodes, a.width_b)
                fields = list(dict.fromkeys(k for r in rows for k in r))
                with open(path.with_suffix(".tmp"), "w", newline="") as f:
                    w = csv.DictWriter(f, fields, restval="")
                    w.writeheader()
                    w.writerows(rows)
                path.with_suffix(".tmp").replace(path)
                print(json.dumps(rows[-1]), flush=True)
    table(rows)


if __name__ == "__main__":
    main()
