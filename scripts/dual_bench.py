"""Dual policy distillation benchmark: at equal env steps per learner, (a) one PPO learner with the workbench's own
defaults, (b) two independent learners (best of the two), (c) DPD with the paper's weighting, (d) DPD with the
authors' code's weighting. Final return (each learner's card: greedy, eval_episodes from env seed 10,000) and area
under the learning curve (the mean training return over the logged points). Resumable: a finished run is read, not
run again.

    python scripts/dual_bench.py --out runs/dual-bench --envs CartPole-v1 Acrobot-v1 --steps 100000
    python scripts/dual_bench.py --out runs/dual-bench --table
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

CONDITIONS = ("single", "independent", "paper", "code")


def curve_auc(folder: Path) -> float:
    """Mean training return over a run's logged points (the area under its learning curve per logged point)."""
    vals = [r.get("charts/episodic_return") for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def run_condition(out: Path, env: str, cond: str, seed: int, steps: int, episodes: int) -> list[dict]:
    folder = out / env.replace("/", "_") / f"{cond}-s{seed}"
    if cond == "single":
        if not (folder / "card.json").exists():
            train_ppo(ppo_config("demo", env, seed=seed, total_steps=steps, eval_episodes=episodes), folder,
                      resume=folder.exists(), progress_bar=False)
        learners = {"a": folder}
    else:
        if not (folder / "card.json").exists():
            config = DualConfig(env_id=env, seed=seed, total_steps=steps, eval_episodes=episodes,
                                every=0 if cond == "independent" else 5, weighting="code" if cond == "code" else "paper")
            distill_dual(config, folder, resume=folder.exists(), progress_bar=False)
        learners = {"a": folder / "a", "b": folder / "b"}
    rows = []
    for name, f in learners.items():
        card = json.loads((f / "card.json").read_text())
        rows.append({"env": env, "condition": cond, "seed": seed, "learner": name, "env_steps": card["env_steps"],
                     "return_mean": card["return_mean"], "return_std": card["return_std"],
                     "return_n": card["return_n"], "auc": curve_auc(f), "wall_seconds": card["wall_seconds"]})
    return rows


def table(rows: list[dict]) -> None:
    """Per env and condition: final return and AUC, the best learner of a pair, mean and range over seeds."""
    cells: dict = {}
    for r in rows:
        cells.setdefault((r["env"], r["condition"], int(r["seed"])), []).append(r)
    out: dict = {}
    for (env, cond, seed), rs in cells.items():
        best = max(rs, key=lambda r: float(r["return_mean"]))
        out.setdefault((env, cond), []).append((float(best["return_mean"]), float(best["auc"]),
                                                np.mean([float(r["return_mean"]) for r in rs])))
    print("| env | condition | seeds | final return, best learner | AUC, that learner | final return, mean of the pair |")
    print("|---|---|---|---|---|---|")
    for (env, cond), v in sorted(out.items(), key=lambda kv: (kv[0][0], CONDITIONS.index(kv[0][1]))):
        f, a, m = map(np.array, zip(*v))
        print(f"| {env} | {cond} | {len(v)} | {f.mean():.1f} [{f.min():.1f}, {f.max():.1f}] | "
              f"{a.mean():.1f} [{a.min():.1f}, {a.max():.1f}] | {m.mean():.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--envs", nargs="+", default=["CartPole-v1", "Acrobot-v1"])
    p.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=100_000, help="env steps per learner")
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table", action="store_true", help="print the table of the rows so far and stop")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.csv"
    rows = list(csv.DictReader(open(path))) if path.exists() else []
    if a.table:
        table(rows)
        return
    set_threads(a.threads)
    done = {(r["env"], r["condition"], int(r["seed"])) for r in rows}
    for env in a.envs:
        for seed in a.seeds:
            for cond in a.conditions:
                if (env, cond, seed) in done:
                    continue
                rows += run_condition(out, env, cond, seed, a.steps, a.episodes)
                with open(path.with_suffix(".tmp"), "w", newline="") as f:
                    w = csv.DictWriter(f, list(rows[0]))
                    w.writeheader()
                    w.writerows(rows)
                path.with_suffix(".tmp").replace(path)
                print(json.dumps(rows[-1]), flush=True)
    table(rows)


if __name__ == "__main__":
    main()
