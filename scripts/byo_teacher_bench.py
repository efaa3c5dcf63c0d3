"""Env steps and seconds until a small student of an imported teacher reaches a target return, per recipe and seed.

The bring-your-own-teacher benchmark, two profiles:

- ``cartpole`` (default): a CartPole-v1 teacher trained with Stable-Baselines3 (scripts/sb3_cartpole_teacher.py),
  imported with ``workbench import-teacher``, distilled into a student with one hidden layer of 16 units (114 acting
  parameters; PPD's critic head adds 17). Each run stops at the first evaluation (every 512 env steps, 20 greedy
  episodes on seeds 0-19) whose mean reaches 475.
- ``atari``: an Atari teacher trained with SB3 (scripts/sb3_atari_teacher.py), imported under SB3's own wrappers,
  distilled into the net3 student (3.7% of the Nature CNN). Each run stops at the first evaluation (every 10,240 env
  steps, 20 greedy episodes on seeds 0-19) whose mean reaches 90% of the teacher's own mean on those 20 episodes,
  or at 200k env steps.

The figures are the env steps and the train seconds (evaluations left out) to that point.

    python scripts/byo_teacher_bench.py TEACHER_DIR OUT_DIR [--profile atari] [--seeds 5] [--recipes ...]

Writes OUT_DIR/results.csv (one row per recipe and seed) and prints min-max per recipe. Resumable: a run with a
card is read, not redone.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

from workbench.distill.engine import load_teacher
from workbench.distill.loop import distill, distill_config
from workbench.evaluate import evaluate

COMMON = dict(student_layers=":16", n_envs=8, total_steps=40_960, eval_every=512, eval_episodes=20,
              eval_seed=0, target_return=475.0, log_every=512, heldout_size=500, memory_size=20_000,
              checkpoint_every=40_960)
RECIPES = {
    # The workbench's best recipe here: the student acts, the teacher labels, KL on a replay memory.
    "student-driven KL": dict(loss="kl", beta="0", batch_size=128, lr=3e-3, learning_starts=128, updates_per_step=2.0),
    "student-driven NLL": dict(loss="nll", beta="0", batch_size=128, lr=3e-3, learning_starts=128, updates_per_step=2.0),
    "teacher-driven KL": dict(loss="kl", beta="1", teacher_epsilon=0.0, batch_size=128, lr=3e-3, learning_starts=128,
                              updates_per_step=2.0),
    # Proximal policy distillation: PPO on the student's rollouts (64 steps x 8 envs) + the clipped KL term.
    "PPD": dict(loss="ppd", batch_size=64, lr=1e-3, ppd_rollout=64, ppd_epochs=10),
}

ATARI_COMMON = dict(student_net="net3", n_envs=8, total_steps=200_000, eval_every=10_240, eval_episodes=20,
                    eval_seed=0, log_every=10_240, heldout_size=500, memory_size=100_000, checkpoint_every=200_000)
ATARI_RECIPES = {
    "student-driven KL": dict(loss="kl", beta="0", batch_size=128, learning_starts=2_048, updates_per_step=0.5),
    "teacher-driven KL": dict(loss="kl", beta="1", batch_size=128, learning_starts=2_048, updates_per_step=0.5),
    # PPD at PPO's Atari settings: rollouts of 128 x 8, 4 epochs, minibatch 256, lr 2.5e-4.
    "PPD": dict(loss="ppd", batch_size=256, lr=2.5e-4, ppd_rollout=128, ppd_epochs=4),
}
PROFILES = {"cartpole": (COMMON, RECIPES), "atari": (ATARI_COMMON, ATARI_RECIPES)}


def target_of(teacher: str, common: dict) -> float:
    """The Atari profile's target: 90% of the teacher's own mean on the evaluation's episodes."""
    policy, _, spec = load_teacher(teacher)
    mean = evaluate(policy, spec.env_id, common["eval_episodes"], common["eval_seed"], spec.settings).mean
    last = common["eval_seed"] + common["eval_episodes"] - 1
    print(f"teacher {teacher}: {mean:.2f} over episodes {common['eval_seed']}..{last}; target {0.9 * mean:.2f}",
          flush=True)
    return round(0.9 * float(mean), 4)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("teacher")
    p.add_argument("out")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--profile", choices=sorted(PROFILES), default="cartpole")
    p.add_argument("--recipes", nargs="*")
    args = p.parse_args()
    common, recipes = PROFILES[args.profile]
    args.recipes = args.recipes or list(recipes)
    if args.profile == "atari":
        common = {**common, "target_return": target_of(args.teacher, common)}
    out = Path(args.out)
    rows = []
    for name in args.recipes:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            folder = out / name.replace(" ", "_") / f"seed{seed}"
            if not (folder / "card.json").exists():
                shutil.rmtree(folder, ignore_errors=True)  # an interrupted run starts over
                config = distill_config("demo", args.teacher, seed=seed, **common, **recipes[name])
                if config.student_layers:  # sized by its layers alone (a preset would hold it within 15% of it)
                    config = dataclasses.replace(config, student_net=None)
                distill(config, folder, progress_bar=False)
            card = json.loads((folder / "card.json").read_text())
            hit = card.get("target_reached") or {}
            rows.append({"recipe": name, "seed": seed, "env_steps": hit.get("env_steps"),
                         "train_seconds": hit.get("train_seconds"), "updates": hit.get("updates"),
                         "return_at_target": hit.get("return"), "target": common["target_return"],
                         "final_return_20ep": card["return_mean"],
                         "student_params": card["student_params"]})
            print(rows[-1], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"\n{'recipe':22}{'reached':>9}{'env steps (min-max)':>22}{'seconds (min-max)':>20}")
    for name in args.recipes:
        r = [x for x in rows if x["recipe"] == name]
        ok = [x for x in r if x["env_steps"] is not None]
        steps = [x["env_steps"] for x in ok]
        secs = [x["train_seconds"] for x in ok]
        span = (lambda v, f: f"{f(min(v))}-{f(max(v))}" if v else "-")
        print(f"{name:22}{len(ok):>5}/{len(r):<3}{span(steps, lambda v: f'{v:,}'):>22}"
              f"{span(secs, lambda v: f'{v:.2f}'):>20}   mean {np.mean(steps) if steps else float('nan'):,.0f} steps, "
              f"{np.mean(secs) if secs else float('nan'):.2f} s")


if __name__ == "__main__":
    main()
