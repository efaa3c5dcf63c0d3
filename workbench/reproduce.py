"""Rusu et al. (2016)'s compression table reproduced on the shipped teachers, and the other measurements that run.

The sweep config (``data/results/rusu_sweep.json``) names the teachers ("shipped": every teacher in
``data/teachers``), Rusu's student sizes and the 1.7% student, the three losses and the seeds. ``reproduce`` runs
it as one sweep (finished runs are skipped, so it resumes) and tables the runs with ``results.rusu_table``: % of
teacher per game, student size and loss (mean and std over seeds), and the geometric mean over games per size and
loss, beside Rusu's Dist-KL figures (108.3 / 101.7 / 83.9 for net1 / net2 / net3 over 10 Atari games).
``estimate`` times a sweep's pieces on this machine, and ``long_evaluation_rows`` plays finished runs and their
teachers over more episodes. The committed results and the tables built from them are in ``workbench.results``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .collect import Collector
from .distill.engine import collect_step, load_teacher, student_update
from .distill.loop import default_lr, distill_config, student_spec_for
from .distill.losses import get_loss
from .envs import make_env
from .evaluate import evaluate, evaluate_teacher
from .memory import ReplayMemory
from .nets import build
from .results import (DATA, LONG_EVAL_COLUMNS, LONG_EVAL_KEY, LONG_EVALS, probe_row, read_long_evals, replace_rows,
                      rusu_table)
from .runs import Run, atomic_write_bytes, load_policy
from .sweep import sweep
from .teachers import TEACHERS_DIR

CONFIG = DATA / "rusu_sweep.json"


def load_config(path: str | Path = CONFIG, **overrides) -> dict:
    """The sweep config, with ``teachers: "shipped"`` resolved to the shipped teachers' names; overrides that
    are not None replace fields (teachers, nets, losses, seeds)."""
    config = json.loads(Path(path).read_text())
    config.update({k: v for k, v in overrides.items() if v is not None})
    if config["teachers"] == "shipped":
        config["teachers"] = sorted(p.parent.name for p in TEACHERS_DIR.glob("*/card.json"))
    unknown = set(config["losses"]) - {"nll", "mse", "kl"}
    if unknown:
        raise ValueError(f"unknown losses {sorted(unknown)} in {path}; use nll, mse, kl")
    return config


def reproduce(config: dict, out: str | Path, preset: str = "demo", engine: str = "local", device: str = "auto",
              **sweep_kwargs):
    """Run the sweep into ``out`` on ``device``; write ``out/rusu_table.csv`` and return (results, table)."""
    t0 = time.perf_counter()
    results = sweep(config["teachers"], config["nets"], config["losses"], config["seeds"], out, preset, engine,
                    overrides={"tau": config["tau"], "device": device}, **sweep_kwargs)
    collected = sweep_kwargs.get("finished_only")  # then the sweep's own wall time is not known here
    table = rusu_table(results, preset=preset, wall_seconds=None if collected else time.perf_counter() - t0)
    atomic_write_bytes(Path(out) / "rusu_table.csv", table.to_csv(index=False).encode())
    return results, table


def estimate(config: dict, preset: str = "full", probe_steps: int = 100, probe_updates: int = 20,
             seed: int = 0) -> pd.DataFrame:
    """How long each run of the sweep would take at ``preset`` on this machine, from timing a few of its pieces
    (seconds, not a run): one row per teacher x student size with the time of one collection step (the teacher
    labels, the student acts, n_envs envs step, the memory stores) and of one update at the preset's batch size,
    and ``run_seconds`` = steps / n_envs x collection + updates x update. Times are this process's CPU time, so a
    busy machine does not inflate them: with one torch thread they are the wall time on an idle core.
    Evaluations are left out (they add a few per cent at the demo preset). ``sweep_hours`` sums runs over losses
    and seeds."""
    rows = []
    for teacher_name in config["teachers"]:
        teacher, _, spec = load_teacher(teacher_name)
        base = distill_config(preset, teacher_name)
        envs, _ = make_env(spec.env_id, base.n_envs, seed, **spec.settings)
        obs, _ = envs.reset(seed=seed)
        memory = ReplayMemory(max(4 * probe_steps * base.n_envs, 1_000), spec.obs_shape, spec.obs_dtype, base.n_envs,
                              spec.settings.get("stack_num", 1), extras={"teacher": ((spec.n_actions,), np.float32)})
        collector = Collector(envs, spec, memory, obs, clip_rewards=False)
        for net in config["nets"]:
            student = build(student_spec_for(distill_config(preset, teacher_name, student_net=net), teacher.spec),
                            "pi", seed=seed)
            rng = np.random.default_rng(seed)

            def step():  # what the loop does each vector step: the teacher labels, both act, beta picks
                collect_step(collector, teacher, rng, 0.05, student, 1.0)

            for _ in range(10):  # warm up: first calls allocate
                step()
            t0 = time.process_time()
            for _ in range(probe_steps):
                step()
            t_step = (time.process_time() - t0) / probe_steps
            optimizer = torch.optim.Adam(student.parameters(), lr=base.lr or default_lr(student.spec.family))
            loss_fn, rng = get_loss("kl", config["tau"]), np.random.default_rng(seed)
            student_update(student, optimizer, loss_fn, memory, base.batch_size, rng)
            t0 = time.process_time()
            for _ in range(probe_updates):
                student_update(student, optimizer, loss_fn, memory, base.batch_size, rng)
            t_update = (time.process_time() - t0) / probe_updates
            vector_steps = base.total_steps / base.n_envs
            updates = max(0.0, (base.total_steps - base.learning_starts) / base.n_envs) * base.updates_per_step
            rows.append({"teacher": teacher_name, "env_id": spec.env_id, "student_net": net, "preset": preset,
                         "env_steps": base.total_steps, "updates": int(updates), "batch_size": base.batch_size,
                         "collect_ms": round(1e3 * t_step, 3), "update_ms": round(1e3 * t_update, 3),
                         "run_seconds": round(vector_steps * t_step + updates * t_update, 1)})
        envs.close()
    df = pd.DataFrame(rows)
    runs_per_cell = len(config["losses"]) * len(config["seeds"])
    df["sweep_hours"] = (df["run_seconds"] * runs_per_cell / 3600).round(2)
    return df


def long_evaluation_rows(runs, recipe: str, episodes: int = 100, into: str | Path = LONG_EVALS) -> pd.DataFrame:
    """Evaluate finished student runs over ``episodes`` greedy episodes from their card's eval seed (the card's
    episodes and more), and their teacher over the same episodes, and add the rows to ``into`` under ``recipe``
    (a row of the same recipe, teacher, size, loss, seed and episode count is replaced). The teacher is played once
    per teacher and seed range: this call's other runs and the file's earlier rows of the same teacher reuse its mean
    (``teacher_card_return_mean``, the teacher's card score, tells a replaced teacher of that name apart). Every run is
    checked (``results.probe_row``) before anything is evaluated; the file is read again and rewritten atomically at
    the end, so rows that another call added meanwhile stay."""
    if episodes < 1:
        raise ValueError(f"episodes {episodes}: give a positive number of evaluation episodes (the cards use 30)")
    into = Path(into)
    cards = [probe_row(r, recipe) for r in runs]  # refuses unfinished runs and runs of a replaced teacher
    old = read_long_evals(into)
    teachers = {(t, int(e), int(s), round(c, 6)): (m, sd) for t, e, s, c, m, sd in old[
        ["teacher", "episodes", "eval_seed", "teacher_card_return_mean", "teacher_return_mean", "teacher_return_std"]
    ].dropna(subset=["teacher_card_return_mean"]).itertuples(index=False)}
    rows = []
    for run_dir, card in tqdm(list(zip(runs, cards)), desc=f"{episodes}-episode evaluations", unit="run"):
        run = Run(run_dir)
        settings, seed, env_id = run.config["env_spec"]["settings"], int(run.card["eval_seed"]), run.card["env_id"]
        student = evaluate(load_policy(run_dir), env_id, episodes, seed, settings)
        key = (card["teacher"], episodes, seed, round(card["teacher_return_mean"], 6))
        if key not in teachers:
            policy, teacher_card, _ = load_teacher(run.config["teacher"])
            played = evaluate_teacher(policy, teacher_card, env_id, episodes, seed, settings)
            teachers[key] = (played.mean, played.std)
        t_mean, t_std = teachers[key]
        rows.append({"recipe": recipe, "teacher": card["teacher"], "student_net": card["student_net"],
                     "loss": card["loss"], "seed": card["seed"], "episodes": episodes, "eval_seed": seed,
                     "return_mean": student.mean, "return_std": student.std, "teacher_return_mean": t_mean,
                     "teacher_return_std": t_std, "pct_of_teacher": 100.0 * student.mean / t_mean if t_mean else None,
                     "stalled_episodes": student.stalled, "card_pct_of_teacher": card["pct_of_teacher"],
                     "teacher_card_return_mean": card["teacher_return_mean"]})
    new = pd.DataFrame(rows, columns=LONG_EVAL_COLUMNS)
    # Read again: evaluations take minutes, and rows another call wrote meanwhile must not be lost.
    old = read_long_evals(into)
    table = replace_rows(old, new, LONG_EVAL_KEY)
    atomic_write_bytes(into, table.to_csv(index=False).encode())
    return table
