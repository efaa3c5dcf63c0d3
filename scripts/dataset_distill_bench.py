"""Dataset distillation benchmark: for each shipped MinAtar teacher, set size and builder, a fresh net3 student
trained only on the set (the set's recipe: Adam, full batch), scored at the 100-episode protocol (greedy, env seeds
10,000-10,099) as % of the teacher on the same episodes. Resumable: a row already in the CSV is not run again.

    python scripts/dataset_distill_bench.py --out runs/dataset-bench --games breakout freeway
    python scripts/dataset_distill_bench.py --out runs/dataset-bench --table   # the summary of what has run

Each (game, seed) draws one pool of the teacher's play, shared by every builder and size (its seconds are in
``pool_seconds``; ``build_seconds`` is the builder's own time after it). Every set is kept under OUT/sets/.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from workbench.distill.dataset import DatasetConfig, build_set, fit_set, save_set, student_spec, teacher_pool
from workbench.distill.engine import load_teacher
from workbench.evaluate import evaluate, pct_of_teacher, random_returns
from workbench.hardware import set_threads
from workbench.nets import build
from workbench.runs import atomic_write_json, read_json

GAMES = ("breakout", "freeway", "asterix", "seaquest", "space_invaders")
FIELDS = ("game", "builder", "size", "seed", "return_mean", "return_std", "teacher_return", "pct_of_teacher",
          "pct_kind", "build_seconds", "pool_seconds", "train_seconds", "teacher_queries", "episodes")


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def teacher_scores(out: Path, game: str, teacher, env, episodes: int, seed: int) -> dict:
    """The teacher's (and, where its return is not positive, a random policy's) mean over the protocol's episodes,
    measured once per game and kept in OUT/teachers.json."""
    path = out / "teachers.json"
    known = read_json(path) if path.exists() else {}
    key = f"{game}:{episodes}:{seed}"
    if key not in known:
        t = evaluate(teacher, env.env_id, episodes, seed, env.settings)
        known[key] = {"teacher": t.mean, "teacher_std": t.std}
        if t.mean <= 0:
            known[key]["random"] = random_returns(env.env_id, env.n_actions, episodes, seed, env.settings).mean
        atomic_write_json(path, known)
    return known[key]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--games", nargs="+", default=list(GAMES), choices=GAMES)
    p.add_argument("--sizes", nargs="+", type=int, default=[16, 64, 256])
    p.add_argument("--builders", nargs="+", default=["random", "coreset", "trajectory", "evolved"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="DatasetConfig fields for every build, e.g. generations=20 population=16")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table", action="store_true", help="print the summary of the rows so far and stop")
    p.add_argument("--markdown", action="store_true", help="print the rows so far as the lab notes' tables and stop")
    p.add_argument("--ship", default=None, metavar="DIR",
                   help="copy each game's best 64-state set into DIR (e.g. data/distilled) with a README, and stop: "
                        "the builder with the best mean over seeds, then its best seed")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "results.csv"
    if a.table:
        summary(read_rows(rows_path))
        return
    if a.markdown:
        markdown(read_rows(rows_path))
        return
    if a.ship:
        ship(read_rows(rows_path), out, Path(a.ship))
        return
    set_threads(a.threads)
    overrides = {}
    for item in a.set:
        k, v = item.split("=", 1)
        typ = type(getattr(DatasetConfig(), k))
        overrides[k] = typ(float(v)) if typ in (int, float) else v
    atomic_write_json(out / "recipe.json", {"overrides": overrides, "episodes": a.episodes,
                                            "config": dataclasses.asdict(DatasetConfig(**overrides))})
    rows = read_rows(rows_path)
    done = {(r["game"], r["builder"], int(r["size"]), int(r["seed"])) for r in rows}
    pools: dict = {}
    for builder in a.builders:
        for game in a.games:
            teacher, card, env = load_teacher(f"minatar-{game}")
            scores = teacher_scores(out, game, teacher, env, a.episodes, 10_000)
            for seed in a.seeds:
                for size in a.sizes:
                    if (game, builder, size, seed) in done:
                        continue
                    config = DatasetConfig(teacher=f"minatar-{game}", builder=builder, size=size, seed=seed,
                                           **overrides)
                    if (game, seed) not in pools:
                        t0 = time.time()
                        pools[(game, seed)] = (teacher_pool(teacher, env, config.pool_size, seed,
                                                            config.teacher_epsilon), time.time() - t0)
                    pool, pool_seconds = pools[(game, seed)]
                    t0 = time.time()
                    ds = build_set(config, progress_bar=False, pool=pool)
                    build_seconds = time.time() - t0
                    save_set(out / "sets" / f"{game}-{builder}-{size}-s{seed}.safetensors", ds)
                    student = build(student_spec(config, teacher), "pi", seed=seed)
                    fit_set(student, ds, 1, config.train_lr)  # warm the kernels for this batch shape
                    student = build(student_spec(config, teacher), "pi", seed=seed)
                    t0 = time.time()
                    fit_set(student, ds, config.train_steps, config.train_lr)
                    train_seconds = time.time() - t0
                    r = evaluate(student, env.env_id, a.episodes, 10_000, env.settings)
                    pct, kind = pct_of_teacher(r.mean, scores["teacher"], scores.get("random"))
                    rows.append({"game": game, "builder": builder, "size": size, "seed": seed,
                                 "return_mean": round(r.mean, 3), "return_std": round(r.std, 3),
                                 "teacher_return": round(scores["teacher"], 3), "pct_of_teacher": round(pct, 2),
                                 "pct_kind": kind, "build_seconds": round(build_seconds, 2),
                                 "pool_seconds": round(pool_seconds, 2), "train_seconds": round(train_seconds, 3),
                                 "teacher_queries": ds.meta["teacher_queries"], "episodes": a.episodes})
                    write_rows(rows_path, rows)
                    print(json.dumps(rows[-1]), flush=True)
    summary(rows)


def summary(rows: list[dict]) -> None:
    """Mean and spread over seeds of % of teacher, per game x builder x size."""
    cells: dict = {}
    for r in rows:
        cells.setdefault((r["game"], int(r["size"]), r["builder"]), []).append(float(r["pct_of_teacher"]))
    for (game, size, builder), v in sorted(cells.items()):
        print(f"{game:15s} N={size:<4d} {builder:11s} {np.mean(v):6.1f}% (min {min(v):6.1f}, max {max(v):6.1f}, "
              f"{len(v)} seeds)")


def ship(rows: list[dict], out: Path, into: Path, size: int = 64) -> None:
    """Each game's best set of ``size`` states: the builder with the best mean % of teacher over its seeds, then that
    builder's best seed (chosen on the same 100 episodes that score it: its figure is the best of 3, not a mean)."""
    import shutil

    import pandas as pd

    df = pd.DataFrame(rows)
    df["pct_of_teacher"] = df["pct_of_teacher"].astype(float)
    df = df[df["size"].astype(int) == size]
    into.mkdir(parents=True, exist_ok=True)
    lines = []
    for game, g in df.groupby("game"):
        means, counts = g.groupby("builder")["pct_of_teacher"].mean(), g.groupby("builder").size()
        builder = means[counts == counts.max()].idxmax()  # among the builders run on every seed
        best = g[g["builder"] == builder].sort_values("pct_of_teacher").iloc[-1]
        name = f"minatar-{game}-{size}.safetensors"
        shutil.copyfile(out / "sets" / f"{game}-{builder}-{size}-s{best['seed']}.safetensors", into / name)
        others = ", ".join(f"{b} {v:.1f}" + ("" if counts[b] == counts.max() else f" on {counts[b]} seed(s)")
                           for b, v in means.items() if b != builder)
        lines.append(f"| `{name}` | {builder} | {best['seed']} | {float(best['pct_of_teacher']):.1f} | "
                     f"{means[builder]:.1f} ({others}) |")
    (into / "README.md").write_text(
        f"# Shipped distilled sets\n\nFor each shipped MinAtar teacher, the best {size}-state set of the dataset "
        "distillation benchmark (`scripts/dataset_distill_bench.py`; docs/lab-notes/dataset-distillation.md): the "
        "builder with the best mean % of teacher over its 3 seeds, then that builder's best seed. A fresh net3 student "
        "trained on the set alone (`workbench distill --from-dataset FILE`), 100 greedy episodes from env seed 10,000 "
        "against the teacher on the same episodes. The best seed is picked on the episodes that score it: read the "
        "builder's mean as the figure to expect.\n\n"
        "| file | builder | seed | % of teacher (this set) | builder's mean over 3 seeds (the others') |\n"
        "|---|---|---|---|---|\n" + "\n".join(lines) + "\n")
    print((into / "README.md").read_text())


def markdown(rows: list[dict]) -> None:
    """One table per set size: a row per game, a column per builder, each cell the mean % of teacher over seeds with
    the seeds' range; then build and train seconds per builder."""
    import pandas as pd

    df = pd.DataFrame(rows)
    for col in ("pct_of_teacher", "build_seconds", "pool_seconds", "train_seconds"):
        df[col] = df[col].astype(float)
    df["size"] = df["size"].astype(int)
    builders = [b for b in ("random", "coreset", "trajectory", "evolved") if b in set(df["builder"])]
    for size, d in df.groupby("size"):
        print(f"\n**N = {size}** (% of teacher: mean over seeds, [lowest, highest])\n")
        print("| game | " + " | ".join(builders) + " |")
        print("|---|" + "---|" * len(builders))
        for game, g in d.groupby("game", sort=False):
            cells = []
            for b in builders:
                v = g[g["builder"] == b]["pct_of_teacher"]
                cells.append(f"{v.mean():.1f} [{v.min():.1f}, {v.max():.1f}] ({len(v)})" if len(v) else "")
            print(f"| {game} | " + " | ".join(cells) + " |")
    print("\nseconds (mean over games, seeds and sizes): build = pool + builder; train = 1 student, warm\n")
    print("| builder | pool | builder | train |")
    print("|---|---|---|---|")
    for b in builders:
        g = df[df["builder"] == b]
        print(f"| {b} | {g['pool_seconds'].mean():.1f} | {g['build_seconds'].mean():.1f} | "
              f"{g['train_seconds'].mean():.2f} |")


if __name__ == "__main__":
    main()
