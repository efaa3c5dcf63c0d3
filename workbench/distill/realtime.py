"""Real-time policy distillation (Sun & Fazli 2019): students learn from a teacher while the teacher learns.

The teacher trains as usual (:func:`~workbench.agents.ppo.train_ppo` or :func:`~workbench.agents.dqn.train_dqn`).
After each of its updates an observer hands every student the states the teacher just learned from. They enter
a memory shared by the students, labelled by the teacher as it is after that update, and each student makes
``updates_per_state`` minibatch updates per new state. With ``recompute`` the latest teacher relabels every
minibatch before the student's step instead (one more teacher forward pass per student update), so that no
stored label is older than the teacher.

Clocks, all measured in one run:

- the teacher's time is the run's time less the students' updates and all evaluations;
- a real-time student's clock is the teacher's time plus its own update time (other students' time is not its);
- the sequential baseline distils the final teacher afterwards with the usual teacher-driven loop
  (:func:`~workbench.distill.loop.distill`); its clock is the teacher's whole time plus the distillation's
  training seconds.

``time_to_95`` is the first clock reading at which a student returns at least 95% of the final teacher's
return; ``speedup`` is real-time over sequential (Sun & Fazli: half or less). If a real-time student is not
there when the teacher stops, it goes on learning from the final teacher on the stored states, relabelled by
that teacher once (the ``tail``), until it is, or until the tail's update budget is spent.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from ..agents.common import seed_everything
from ..agents.dqn import dqn_config, train_dqn
from ..agents.ppo import ppo_config, train_ppo
from ..config import ConfigError, OnDevice, Preset, check
from ..envs import make_env
from ..evaluate import evaluate, pct_of_teacher, random_returns, threshold_return
from ..nets import build, preset_spec
from ..hardware import machine, resolve_device, to_device
from ..runs import Run, atomic_write_bytes, save_policy
from .engine import DEFAULT_TAU, KIND_OF_ALGO, fit, heldout, load_teacher, teacher_states
from .loop import Loss, StudentNet, default_lr, distill, distill_config
from .losses import get_loss


@dataclass(frozen=True)
class RealtimeConfig(OnDevice):
    FLAGS: ClassVar[dict] = {"env_id": "env", "students": "student"}

    env_id: str = "MinAtar/Breakout-v1"
    """The game the teacher learns (ALE/<Game>-v5, MinAtar/<Game>-v1, CartPole-v1, Acrobot-v1)."""
    algo: Literal["ppo", "dqn"] = "ppo"
    """Teacher algorithm: ppo or dqn."""
    preset: Preset = "demo"
    """The teacher's preset (smoke, demo, full); the sequential baseline distils with distill_preset."""
    teacher_steps: int | None = None
    """Env steps of teacher training (None: the preset's)."""
    teacher_width: float = 1.0
    """Width multiplier of the teacher's network."""
    students: tuple[StudentNet, ...] = ("net3", "tiny")
    """Student size presets, all trained in the same run (Rusu's net3 is 4% of the teacher; tiny 1.7%)."""
    loss: Loss = "kl"
    """nll, mse or kl."""
    tau: float | None = None
    """KL temperature applied to the teacher; None: by its outputs, 0.01 for DQN Q-values, 1 for PPO logits."""
    lr: float | None = None
    """Students' Adam step size; None: their family's (``default_lr``: 1e-3, 2.5e-4 for a Nature CNN)."""
    batch_size: int = 256
    """States per student update."""
    memory_size: int = 50_000
    """States kept for the students (the teacher's most recent experience)."""
    updates_per_state: float = 1 / 128
    """Student updates per state the teacher collects; replay ratio = batch_size x this (2 by default).
    Measured on CartPole: 1/128 reached 95% of the final teacher as soon as 1/32 did, for a third of the students'
    time."""
    recompute: bool = False
    """Relabel each sampled minibatch with the latest teacher (True) or keep the labels made on arrival.
    Measured on CartPole: recomputing copies the final teacher more closely (agreement 0.998 vs 0.94-0.96) but
    costs 2.2x the students' time and did not reach 95% sooner."""
    eval_points: int = 20
    """Students and teacher are evaluated this many times over the teacher's training."""
    eval_episodes: int = 10
    """Episodes per evaluation point, 1 to 10: the sequential baseline's points use the same first 10 seeds."""
    final_eval_episodes: int = 30
    """Episodes of the final evaluation of every student."""
    eval_seed: int = 10_000
    """Env seed of the first evaluation episode."""
    tail_updates: int = 4_000
    """Most updates a real-time student may make after the teacher stops, to reach 95%."""
    sequential: bool = True
    """Also run the train-then-distill baseline from the final teacher (needed for the speedup)."""
    distill_preset: Preset | None = None
    """Preset of the sequential baseline's distillation (None: the teacher's preset)."""
    distill_steps: int | None = None
    """Env steps of the baseline's distillation (None: its preset's)."""
    seed: int = 0
    """Seeds torch, numpy and the envs: same seed, same numbers on the same machine."""
    threshold: float = 0.95
    """Share of the final teacher's return a student must reach (by evaluate.pct_of_teacher's definition)."""

    def __post_init__(self):
        object.__setattr__(self, "students", tuple(self.students))  # a list from Python or a notebook is fine
        check(self, positive=("teacher_steps", "teacher_width", "tau", "lr", "batch_size", "memory_size",
                              "updates_per_state", "eval_points", "eval_episodes", "final_eval_episodes",
                              "distill_steps", "threshold"),
              non_negative=("tail_updates", "seed", "eval_seed"))
        if not self.students:
            raise ConfigError("give at least one student size (--student net3 tiny)")
        if self.eval_episodes > 10:
            raise ConfigError(f"eval_episodes (--eval-episodes) must be 1 to 10 (the baseline's points use 10 seeds), "
                              f"got {self.eval_episodes}")
        if self.memory_size < self.batch_size:
            raise ConfigError(f"memory_size (--memory-size) {self.memory_size} is smaller than a batch "
                              f"(--batch-size {self.batch_size}): the students would never update")
        if self.threshold > 1:
            raise ConfigError(f"threshold (--threshold) is a share of the teacher's return, at most 1, got "
                              f"{self.threshold}")


class StateMemory:
    """A ring of states with the teacher's outputs for each."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype, n_actions: int):
        self.states = np.zeros((capacity,) + tuple(obs_shape), dtype=obs_dtype)
        self.labels = np.zeros((capacity, n_actions), dtype=np.float32)
        self.capacity, self.size, self.head = capacity, 0, 0

    def add(self, states: np.ndarray, labels: np.ndarray) -> None:
        idx = (self.head + np.arange(len(states))) % self.capacity
        self.states[idx], self.labels[idx] = states, labels
        self.head = int((self.head + len(states)) % self.capacity)
        self.size = min(self.capacity, self.size + len(states))

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = rng.integers(0, self.size, batch_size)
        return torch.from_numpy(self.states.take(idx, axis=0)), torch.from_numpy(self.labels.take(idx, axis=0))


@dataclass
class _Student:
    name: str
    policy: torch.nn.Module
    optimizer: torch.optim.Optimizer
    seconds: float = 0.0
    updates: int = 0
    owed: float = 0.0
    losses: list = field(default_factory=list)


def _first_reach(points: list[tuple[float, float]], target: float | None) -> float | None:
    """First clock reading of (clock, return) points at which return >= target (None without a target)."""
    return None if target is None else next((clock for clock, ret in points if ret >= target), None)


def _target(threshold: float, teacher_return: float, random_return: float | None) -> float | None:
    """``threshold`` of the teacher's return by evaluate.pct_of_teacher's definition; None where the teacher plays
    no better than random (or, on a card from before random returns were kept, its return is not positive): there is
    then no time to reach, rather than a failed run."""
    try:
        return threshold_return(threshold, teacher_return, random_return)
    except ValueError:
        return None


def times_to_threshold(rows: list[dict], threshold: float = 0.95, random_return: float | None = None) -> dict:
    """From a real-time run's metrics rows: the target (``threshold`` x the final teacher's return on the
    evaluation points' own seeds) and, per student, the first reading at or above it on each clock, and their ratio.

    The target comes from the same episodes as the points it is compared with: a 30-episode final mean against
    10-episode points would make a student that plays exactly like its teacher miss by noise alone."""
    live = [r for r in rows if r.get("phase") == "realtime" and r.get("teacher_return") is not None]
    target = _target(threshold, live[-1]["teacher_return"], random_return)
    names = sorted({k.split("/")[0] for r in rows for k in r if k.endswith("/return") and k != "teacher_return"})
    # No student can reach the target before the teacher itself plays that well: the teacher's own first reading
    # at the target bounds the real-time clock from below (a student that copied it instantly and for free).
    teacher_at = _first_reach([(r["teacher_seconds"], r["teacher_return"]) for r in live], target)
    out: dict = {"target_return": target, "teacher_time_to_95": teacher_at}
    for name in names:
        rt = _first_reach([(r[f"{name}/seconds"], r[f"{name}/return"]) for r in rows if f"{name}/return" in r], target)
        seq = _first_reach([(r[f"{name}/seq_seconds"], r[f"{name}/seq_return"]) for r in rows
                            if f"{name}/seq_return" in r], target)
        out[name] = {"time_to_95_realtime": rt, "time_to_95_sequential": seq,
                     "speedup": rt / seq if rt and seq else None,
                     "speedup_bound": teacher_at / seq if teacher_at and seq else None}
    return out


def realtime_distill(config: RealtimeConfig, out: str | Path, progress_bar: bool = True, callback=None) -> dict:
    """Train a teacher with students distilling from it as it learns; writes ``out`` and returns its card.

    ``out/teacher`` is the teacher's run, ``out/students/<net>`` each real-time student, ``out/sequential/<net>``
    the baseline distillations; ``out/metrics.jsonl`` has every evaluation point on all clocks.
    ``callback(row)`` sees those rows as they come (live plots).
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "a finished real-time run" if (out / "card.json").exists() else "an earlier run or other files"
        raise FileExistsError(f"{out} already holds {what}: a teacher and its students learn together and cannot be "
                              "resumed separately; choose another --out (or delete the folder)")
    config = dataclasses.replace(config, tau=config.tau or DEFAULT_TAU[KIND_OF_ALGO[config.algo]],
                                 distill_preset=config.distill_preset or config.preset)
    seed_everything(config.seed)
    make_teacher_config, train = (ppo_config, train_ppo) if config.algo == "ppo" else (dqn_config, train_dqn)
    t_config = make_teacher_config(config.preset, config.env_id, seed=config.seed, width=config.teacher_width,
                                   total_steps=config.teacher_steps, eval_episodes=config.final_eval_episodes,
                                   eval_seed=config.eval_seed, device=config.device)
    device = resolve_device(config.device)
    _, spec = make_env(config.env_id, 1, config.seed, **t_config.env_settings)
    run = Run(out)
    run.write_config(config, env_spec=spec.to_dict(), teacher_config=dataclasses.asdict(t_config))

    loss_fn = get_loss(config.loss, config.tau)
    rng = np.random.default_rng(config.seed)
    memory = StateMemory(config.memory_size, spec.obs_shape, spec.obs_dtype, spec.n_actions)
    students: list[_Student] = []
    every = max(1, t_config.total_steps // config.eval_points)
    clock = {"start": time.perf_counter(), "students": 0.0, "eval": 0.0, "next_eval": every}

    def teacher_seconds() -> float:
        if "teacher_done" in clock:  # after the teacher stops its clock stands still
            return clock["teacher_done"]
        return time.perf_counter() - clock["start"] - clock["students"] - clock["eval"]

    def student_step(s: _Student, teacher) -> None:
        obs_B, labels_BA = (to_device(a, device) for a in memory.sample(config.batch_size, rng))
        if config.recompute:
            with torch.no_grad():
                labels_BA = teacher.logits(obs_B)
        s.losses.append(fit(s.optimizer, loss_fn, s.policy.logits(obs_B), labels_BA))
        s.updates += 1

    def log_point(step: int, teacher, phase: str) -> dict:
        t_eval = time.perf_counter()
        t_sec = teacher_seconds()
        row = {"phase": phase, "teacher_seconds": round(t_sec, 2)}
        if teacher is not None:
            row["teacher_return"] = evaluate(teacher, spec.env_id, config.eval_episodes, config.eval_seed,
                                             spec.settings).mean
        for s in students:
            row[f"{s.name}/return"] = evaluate(s.policy, spec.env_id, config.eval_episodes, config.eval_seed,
                                               spec.settings).mean
            row[f"{s.name}/seconds"] = round(t_sec + s.seconds, 2)
            row[f"{s.name}/loss"] = float(np.mean(s.losses)) if s.losses else None
            row[f"{s.name}/updates"] = s.updates
            s.losses = []
        run.log(step, **row)
        if callback:
            callback({"step": step, **row})
        clock["eval"] += time.perf_counter() - t_eval
        return row

    def observe(teacher, states, step: int) -> None:
        if not students:  # built on first sight of the teacher, whose NetSpec sizes them
            for i, name in enumerate(config.students):
                policy = build(preset_spec(name, teacher.spec), "pi", seed=config.seed + i).to(device)
                students.append(_Student(name, policy, torch.optim.Adam(policy.parameters(),
                                                                        lr=config.lr or default_lr(policy.spec.family))))
        t0 = time.perf_counter()
        with torch.no_grad():
            labels = teacher.logits(states).cpu().numpy()
        memory.add(states.cpu().numpy() if torch.is_tensor(states) else np.asarray(states), labels)
        label_seconds = time.perf_counter() - t0
        for s in students:
            t0 = time.perf_counter()
            s.owed += len(states) * config.updates_per_state
            while s.owed >= 1 and memory.size >= config.batch_size:
                s.owed -= 1
                student_step(s, teacher)
            # Labelling the new states is work the students need; each is charged an equal share.
            s.seconds += time.perf_counter() - t0 + label_seconds / len(students)
        clock["students"] = sum(s.seconds for s in students)
        if step >= clock["next_eval"]:
            log_point(step, teacher, "realtime")
            while clock["next_eval"] <= step:
                clock["next_eval"] += every

    t_card = train(t_config, out / "teacher", progress_bar=progress_bar, observer=observe)
    teacher_total = clock["teacher_done"] = teacher_seconds()
    teacher, _, _ = load_teacher(str(out / "teacher"))
    teacher.to(device)
    step = t_card["env_steps"]
    last = log_point(step, teacher, "realtime")
    # The final teacher on the points' own seeds; a random policy there too where % of teacher needs it.
    random = None
    if last["teacher_return"] <= 0 or t_card["return_mean"] <= 0:
        random = {"points": random_returns(spec.env_id, spec.n_actions, config.eval_episodes, config.eval_seed,
                                           spec.settings).mean,
                  "final": random_returns(spec.env_id, spec.n_actions, config.final_eval_episodes, config.eval_seed,
                                          spec.settings).mean}
    target = _target(config.threshold, last["teacher_return"], random and random["points"])

    # -- tail: students not yet at the threshold go on learning from the final teacher -----------------------
    chunk = max(1, config.tail_updates // 10)
    lagging = [s for s in students if target is not None and last[f"{s.name}/return"] < target]
    if lagging:  # the stored labels are older teachers': the final teacher relabels the memory once
        t0 = time.perf_counter()
        with torch.no_grad():
            for start in range(0, memory.size, 4_096):
                memory.labels[start:start + 4_096] = teacher.logits(memory.states[start:start + 4_096]).cpu().numpy()
        for s in lagging:
            s.seconds += (time.perf_counter() - t0) / len(lagging)
    for s in lagging:
        done = 0
        while last[f"{s.name}/return"] < target and done < config.tail_updates:
            t0 = time.perf_counter()
            for _ in range(chunk):
                student_step(s, teacher)
            s.seconds += time.perf_counter() - t0
            done += chunk
            last = log_point(step, None, "tail")
            clock["students"] = sum(x.seconds for x in students)

    # -- sequential baseline: distil the final teacher, same sizes, same loss ---------------------------------
    held = teacher_states(teacher, spec, 2_000, config.seed + 777_777, 0.05)
    results = {}
    for s in students:
        save_policy(out / "students" / s.name / "model.safetensors", s.policy, env_id=spec.env_id,
                    algo="realtime-distill", teacher=str(out / "teacher"))
        final = evaluate(s.policy, spec.env_id, config.final_eval_episodes, config.eval_seed, spec.settings)
        res = {
            "params": s.policy.n_params, "compression": s.policy.n_params / teacher.n_params,
            "return_mean": final.mean, "return_std": final.std,
            "pct_of_teacher": pct_of_teacher(final.mean, t_card["return_mean"], random and random["final"])[0],
            "agreement": heldout(s.policy, teacher, held, config.loss, config.tau)["agreement"],
            "updates": s.updates, "student_seconds": round(s.seconds, 1),
        }
        if config.sequential:
            seq_points: list[tuple[float, float]] = []

            def seen(row, points=seq_points):
                if row.get("charts/student_return") is not None:
                    points.append((round(teacher_total + row["train_seconds"], 2), row["charts/student_return"]))

            d_config = distill_config(config.distill_preset, str(out / "teacher"), student_net=s.name,
                                      loss=config.loss, tau=config.tau, seed=config.seed, lr=config.lr,
                                      batch_size=config.batch_size, total_steps=config.distill_steps,
                                      eval_episodes=config.final_eval_episodes, eval_seed=config.eval_seed)
            d_config = dataclasses.replace(d_config, eval_every=max(d_config.n_envs, d_config.total_steps // 10),
                                           log_every=max(d_config.n_envs, d_config.total_steps // 10))
            d_card = distill(d_config, out / "sequential" / s.name, progress_bar=progress_bar, callback=seen)
            for clock_s, ret in seq_points:
                run.log(step, phase="sequential", **{f"{s.name}/seq_seconds": clock_s,
                                                     f"{s.name}/seq_return": ret})
            res.update({"sequential_return_mean": d_card["return_mean"],
                        "sequential_pct_of_teacher": d_card["pct_of_teacher"]})
        results[s.name] = res
    times = times_to_threshold(run.read_metrics_rows(), config.threshold, random and random["points"])
    for name, res in results.items():
        res.update({k: v for k, v in times[name].items() if config.sequential or k == "time_to_95_realtime"})

    card = {
        "env_id": spec.env_id, "algo": "realtime-distill", "teacher_algo": config.algo, "seed": config.seed,
        "teacher": {"run": str(out / "teacher"), "params": teacher.n_params, "return_mean": t_card["return_mean"],
                    "return_std": t_card["return_std"], "env_steps": t_card["env_steps"],
                    "teacher_seconds": round(teacher_total, 1)},
        "threshold": config.threshold, "target_return": times["target_return"],
        "pct_of_teacher_kind": pct_of_teacher(0.0, t_card["return_mean"], random and random["final"])[1],
        "random_return": random,
        "teacher_time_to_95": times["teacher_time_to_95"], "students": results,
        "loss": config.loss, "tau": config.tau, "updates_per_state": config.updates_per_state,
        "recompute": config.recompute, "wall_seconds": round(time.perf_counter() - clock["start"], 1),
        "device": str(device), "machine": machine(device), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    run.write_card(card)
    return card


def speedup_table(card: dict):
    """One row per student: params, % of teacher, seconds to 95% on each clock, their ratio, and its bound (the
    teacher's own time to 95% over the sequential time: the ratio of a student that copied it instantly)."""
    rows = []
    for name, r in card["students"].items():
        rows.append({"student": name, "params": r["params"], "compression %": round(100 * r["compression"], 1),
                     "% of teacher (real-time)": r["pct_of_teacher"],
                     "% of teacher (sequential)": r.get("sequential_pct_of_teacher"),
                     "s to 95% real-time": r["time_to_95_realtime"],
                     "s to 95% sequential": r.get("time_to_95_sequential"),
                     "ratio": r.get("speedup"), "bound": r.get("speedup_bound")})
    return pd.DataFrame(rows).round(3)


def benchmark_rows(run_dir: str | Path) -> list[dict]:
    """One row per student of a finished real-time run, times recomputed from its metrics (so a threshold or a
    fix to the timing applies to old runs too): the clocks, the ratio, sizes and final % of teacher."""
    run = Run(run_dir)
    card, rows = run.card, run.read_metrics_rows()
    times = times_to_threshold(rows, card.get("threshold", 0.95), (card.get("random_return") or {}).get("points"))
    return [{"env_id": card["env_id"], "teacher_algo": card["teacher_algo"], "teacher_steps": card["teacher"]["env_steps"],
             "teacher_return": card["teacher"]["return_mean"], "teacher_seconds": card["teacher"]["teacher_seconds"],
             "student": name, "params": r["params"], "compression": r["compression"],
             "updates_per_state": card["updates_per_state"], "recompute": card["recompute"],
             "target_return": times["target_return"], "pct_of_teacher_realtime": r["pct_of_teacher"],
             "pct_of_teacher_sequential": r.get("sequential_pct_of_teacher"), "student_seconds": r["student_seconds"],
             "sequential_train_seconds": _last(rows, f"{name}/seq_seconds", minus=card["teacher"]["teacher_seconds"]),
             "teacher_time_to_95": times["teacher_time_to_95"], **times[name], "run": str(run_dir)}
            for name, r in card["students"].items()]


def _last(rows: list[dict], key: str, minus: float = 0.0) -> float | None:
    values = [r[key] for r in rows if key in r]
    return round(values[-1] - minus, 2) if values else None


def write_benchmark(run_dirs, path: str | Path) -> "pd.DataFrame":
    """The benchmark CSV (``benchmark_rows`` of every run, in order), written atomically."""
    df = pd.DataFrame([row for d in run_dirs for row in benchmark_rows(d)])
    atomic_write_bytes(Path(path), df.to_csv(index=False).encode())
    return df
