"""Do trajectory sets' students play better from binary states? For each trajectory set of size N in a
``dataset_distill_bench.py`` folder, its synthetic states are rounded to MinAtar's {0, 1} (``> 0.5``) and labelled
again by the teacher, then a fresh student is trained on them by the benchmark's recipe and scored by its protocol
(100 greedy episodes from env seed 10,000, % of the teacher's return on the same episodes, from the folder's
``teachers.json``). One CSV row per set, with the share of states whose greedy label the rounding changed.

    .venv/bin/python scripts/dataset_round_probe.py runs/dd-traj1000 --out rounded.csv
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from pathlib import Path

import torch

from workbench.distill.dataset import DatasetConfig, fit_set, load_set, student_spec
from workbench.distill.engine import load_teacher
from workbench.evaluate import evaluate, pct_of_teacher
from workbench.hardware import set_threads
from workbench.nets import build

GAMES = ("breakout", "freeway", "asterix", "seaquest", "space_invaders")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=100)
    a = parser.parse_args()
    set_threads(1)
    teachers = json.loads((a.folder / "teachers.json").read_text())
    rows = []
    for game in GAMES:
        teacher, _, env = load_teacher(f"minatar-{game}")
        teacher_return = teachers[f"{game}:{a.episodes}:10000"]["teacher"]
        for seed in a.seeds:
            ds = load_set(a.folder / "sets" / f"{game}-trajectory-{a.size}-s{seed}.safetensors")
            binary = (ds.states > 0.5).float()
            with torch.no_grad():
                labels = teacher.logits(binary)
            rounded = dataclasses.replace(ds, states=binary, labels=labels)
            config = DatasetConfig(teacher=f"minatar-{game}", size=a.size, seed=seed)
            student = build(student_spec(config, teacher), "pi", seed=seed)
            fit_set(student, rounded, 1, config.train_lr)  # warm the kernels, as the benchmark does
            student = build(student_spec(config, teacher), "pi", seed=seed)
            fit_set(student, rounded, config.train_steps, config.train_lr)
            r = evaluate(student, env.env_id, a.episodes, 10_000, env.settings)
            pct, _ = pct_of_teacher(r.mean, teacher_return, None)
            rows.append({"game": game, "seed": seed, "return_mean": round(r.mean, 3), "pct_of_teacher": round(pct, 2),
                         "greedy_label_changed": round(float((labels.argmax(-1) != ds.labels.argmax(-1)).float()
                                                             .mean()), 3), "episodes": a.episodes})
            print(json.dumps(rows[-1]), flush=True)
    with open(a.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
