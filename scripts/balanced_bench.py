"""Balanced multi-stage distillation against uniform (Rusu) and DAgger-style collection at equal teacher-query
budgets: for each shipped MinAtar teacher and seed, a tiny student (1.7% of the teacher, layers 8:16, tau 1) per
method, each allowed the same number of teacher queries and the same number of student updates. Each student is
scored on the teacher's held-out play (per-domain recall of the teacher's action, the worst domain's, balanced
accuracy over domains) and at the 100-episode protocol (greedy, env seeds 10,000-10,099) as % of the teacher on the
same episodes. Resumable: a finished run (its card.json) is not run again, an unfinished one resumes.

    python scripts/balanced_bench.py --out runs/balanced-bench --games seaquest asterix space_invaders
    python scripts/balanced_bench.py --out runs/balanced-bench --table   # measure what has run, write the CSV
    python scripts/balanced_bench.py --out runs/balanced-bench --multitask runs/balanced-mt   # the five-game students

The table pass measures every finished student on one held-out set per game (the teacher's epsilon-greedy play on
seeds far from the training ones) and writes OUT/balanced_bench.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from workbench.hardware import set_threads

GAMES = ("seaquest", "asterix", "space_invaders", "breakout", "freeway")
METHODS = ("uniform", "dagger", "balanced", "balanced_fixed")
FIELDS = ("game", "method", "seed", "budget", "teacher_queries", "updates", "return_mean", "return_std",
          "teacher_return", "pct_of_teacher", "agreement", "balanced_accuracy", "worst_recall", "worst_domain",
          "train_seconds", "episodes")
HELDOUT_SEED = 30_000


def common(budget: int, episodes: int) -> dict:
    """What every method's student shares: its size and shape, the loss, and the updates the budget buys."""
    return dict(student_net="tiny", student_layers="8:16", tau=1.0, total_steps=budget, n_envs=8,
                updates_per_step=0.5, eval_episodes=episodes, eval_every=0, log_every=max(budget // 10, 1_000),
                checkpoint_every=max(budget // 4, 1_000))


def run_one(method: str, game: str, seed: int, budget: int, episodes: int, out: Path) -> dict:
    """Train (or resume, or read) one student; returns its card."""
    folder = out / game / f"{method}-s{seed}"
    if (folder / "card.json").exists():
        return json.loads((folder / "card.json").read_text())
    resume = folder.exists()
    from workbench.distill.loop import distill, distill_config

    extra = {"uniform": dict(beta="1"), "dagger": dict(beta="linear:1:0"), "balanced": dict(method="balanced"),
             "balanced_fixed": dict(method="balanced", balance_rule="fixed")}[method]
    config = distill_config("demo", f"minatar-{game}", seed=seed, **extra, **common(budget, episodes))
    return distill(config, folder, resume=resume)


def measure(out: Path, budget: int) -> list[dict]:
    """Every finished student's row: its card's scores and its per-domain measures on the game's held-out set."""
    from workbench.distill.balanced import domain_report, heldout_domains
    from workbench.distill.engine import load_teacher
    from workbench.runs import load_policy

    rows = []
    for game_dir in sorted(p for p in out.iterdir() if p.is_dir() and p.name in GAMES):
        game = game_dir.name
        teacher, _, spec = load_teacher(f"minatar-{game}")
        held = heldout_domains(teacher, spec, 20_000, HELDOUT_SEED)
        for folder in sorted(game_dir.iterdir()):
            card_path = folder / "card.json"
            if not card_path.exists():
                continue
            card = json.loads(card_path.read_text())
            method, seed = folder.name.rsplit("-s", 1)
            report = domain_report(load_policy(folder), held)
            rows.append({"game": game, "method": method, "seed": int(seed), "budget": budget,
                         "teacher_queries": card["teacher_queries"], "updates": card["updates"],
                         "return_mean": card["return_mean"], "return_std": card["return_std"],
                         "teacher_return": card["teacher_return_mean"], "pct_of_teacher": card["pct_of_teacher"],
                         "agreement": report["agreement"], "balanced_accuracy": report["balanced_accuracy"],
                         "worst_recall": report["worst_recall"], "worst_domain": report["worst_domain"],
                         "train_seconds": card.get("train_seconds", card["wall_seconds"]),
                         "episodes": card["return_n"]})
    return rows


MEASURES = ("pct_of_teacher", "balanced_accuracy", "worst_recall")


def summary(rows: list[dict]) -> None:
    """Mean and range over seeds per game and method; then, per game and measure, whether balanced stands above
    each baseline beyond the seeds' spread (its lowest seed above the baseline's highest)."""
    by: dict[tuple, np.ndarray] = {}
    for r in rows:
        by.setdefault((r["game"], r["method"]), []).append([float(r[k]) for k in MEASURES])
    by = {k: np.array(v) for k, v in by.items()}
    print(f"{'game':15s} {'method':15s} seeds  {'% of teacher':>22s}  {'balanced acc':>22s}  {'worst recall':>22s}")
    for (game, method), v in sorted(by.items()):
        cells = "  ".join(f"{f'{c.mean():.3g} [{c.min():.3g}, {c.max():.3g}]':>22s}" for c in v.T)
        print(f"{game:15s} {method:15s} {len(v):5d}  {cells}")
    print("\nbalanced against each baseline (+: beyond the spread above, -: beyond it below, =: the ranges overlap)")
    for game in sorted({g for g, _ in by}):
        for base in ("uniform", "dagger"):
            for method in ("balanced", "balanced_fixed"):
                if (game, base) in by and (game, method) in by:
                    a, b = by[(game, method)], by[(game, base)]
                    marks = ["+" if a[:, k].min() > b[:, k].max() else "-" if a[:, k].max() < b[:, k].min() else "="
                             for k in range(len(MEASURES))]
                    print(f"{game:15s} {method} vs {base}: " + ", ".join(f"{m} {s}" for m, s in zip(MEASURES, marks)))


def multitask_summary(folder: Path) -> None:
    """The five-game students (``distill-multitask --balance none|adaptive``): per run, the geometric mean of % of
    each game's teacher, the lowest and the mean held-out agreement over games, and each game's % of teacher."""
    for card_path in sorted(folder.glob("*/card.json")):
        c = json.loads(card_path.read_text())
        games = "  ".join(f"{k.split('/')[1].split('-')[0]} {v['pct_of_teacher']:.1f}" for k, v in c["per_game"].items())
        print(f"{card_path.parent.name:12s} geomean {c['geomean_pct_of_teacher']:5.1f}  worst agreement "
              f"{c['worst_agreement']:.3f}  mean agreement {c['balanced_agreement']:.3f}  queries "
              f"{c['teacher_queries']:,}  {games}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--games", nargs="+", default=["seaquest", "asterix", "space_invaders"], choices=GAMES)
    p.add_argument("--methods", nargs="+", default=list(METHODS[:3]), choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budget", type=int, default=200_000, help="teacher queries per student")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table", action="store_true", help="measure the finished runs, write OUT/balanced_bench.csv")
    p.add_argument("--multitask", default=None, metavar="DIR",
                   help="summarise the five-game students under DIR (distill-multitask --balance ...) and stop")
    args = p.parse_args()
    set_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.multitask:
        multitask_summary(Path(args.multitask))
        return
    if args.table:
        rows = measure(out, args.budget)
        with open(out / "balanced_bench.csv", "w", newline="") as f:
            w = csv.DictWriter(f, FIELDS)
            w.writeheader()
            w.writerows(rows)
        summary(rows)
        return
    for seed in args.seeds:
        for game in args.games:
            for method in args.methods:
                card = run_one(method, game, seed, args.budget, args.episodes, out)
                print(f"{game} {method} seed {seed}: {card['pct_of_teacher']:.1f}% of teacher, "
                      f"{card['teacher_queries']:,} queries", flush=True)


if __name__ == "__main__":
    main()
