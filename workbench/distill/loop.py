"""The distillation loop: collect states with a teacher/student mix, label them once, train the student.

Rusu et al. (2016): the frozen teacher plays epsilon-greedy (eps 0.05), a replay memory keeps its states
with its output vectors, and the student learns offline from that memory. ``beta`` is the share of steps
on which the teacher acts: 1 is Rusu's teacher-driven collection, 0 is student-driven (the teacher only
labels the student's states, fixing the distribution shift; Czarnecki et al. 2019), and a schedule such
as ``linear:1:0`` is DAgger-style (Ross et al. 2011). Whoever acts, the teacher is queried once per
collected state and its outputs are stored beside it; ``teacher_queries`` counts those calls.

``ema`` keeps an exponential moving average of the student's weights (Polyak averaging): the optimizer moves
the raw weights, and the averaged network is the student that acts, is evaluated and is saved. A student's score
moves by 10-15 points from one 50k-step evaluation to the next on Seaquest (README), and a card measures the
final weights once; the average is that final network with the last updates' noise taken out.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..agents.common import (open_run, progress, resume_seed, rng_state, seed_everything, set_rng_state,
                             with_preset)
from ..collect import Collector
from ..envs import EnvSpec, make_env
from ..evaluate import agreement, evaluate, evaluate_teacher
from ..memory import ReplayMemory
from ..nets import (PRESET_FRACTIONS, NetSpec, build, format_layers, make_spec, parse_layers, preset_spec,
                    spec_for_fraction, spec_params)
from ..runs import (Run, load_optimizer_arrays, load_policy, machine, optimizer_arrays, save_policy,
                    set_torch_rng_state, torch_rng_state)
from .losses import check_actions, get_loss


@dataclass(frozen=True)
class DistillConfig:
    teacher: str = "data/teachers/minatar-breakout"
    """Teacher run folder (or a shipped teacher's name)."""
    preset: str = "demo"
    """Which preset filled the defaults: smoke, demo or full."""
    student_net: str | None = "net3"
    """Student size preset (teacher, net1, net2, net3, tiny: Rusu's shares); None to use student_width."""
    student_width: float = 0.25
    """Width multiplier of the family's base net, used when student_net is None."""
    student_family: str | None = None
    """Network family of the student (default: the teacher's)."""
    student_layers: str | None = None
    """The student's own layer widths, 'CONV:HIDDEN' (e.g. '8:16'): its shape instead of the width knob's. With
    student_net they must come within 15% of that preset's parameters: another shape at the same size."""
    loss: str = "kl"
    """nll, mse or kl."""
    tau: float = 0.01
    """KL temperature applied to the teacher (Rusu: 0.01 for Q-values; use ~1 for PPO logits)."""
    beta: str = "1"
    """Share of steps the teacher acts: a number, or linear:START:END over the run (DAgger-style)."""
    teacher_epsilon: float = 0.05
    """Epsilon of the teacher's epsilon-greedy acting (Rusu: 0.05); 0 for greedy."""
    student_greedy: bool = True
    """Student acts by argmax (True) or by sampling its softmax (False)."""
    seed: int = 0
    total_steps: int = 100_000
    """Env steps collected, summed over envs."""
    n_envs: int = 8
    memory_size: int = 100_000
    """Replay capacity in states."""
    batch_size: int = 256
    lr: float | None = None
    """Adam step size; None: the student family's (``default_lr``: 1e-3, 2.5e-4 for a Nature CNN)."""
    updates_per_step: float = 0.25
    """Student updates per collected vector step of n_envs states."""
    learning_starts: int = 5_000
    """States collected before the first update."""
    heldout_size: int = 2_000
    """Teacher-driven states (other seeds) on which agreement and KL are measured."""
    log_every: int = 10_000
    eval_every: int = 0
    """Env steps between student evaluations during the run (0: only at the end)."""
    eval_episodes: int = 30
    eval_seed: int = 10_000
    checkpoint_every: int = 50_000
    ema: float = 0.0
    """Decay of a moving average of the student's weights, per update (0: off; 0.999 averages over about the
    last 1,000 updates). When on, the averaged student acts, is evaluated and is saved."""


DISTILL_PRESETS = {
    "smoke": dict(total_steps=1_024, n_envs=4, memory_size=2_000, batch_size=64, learning_starts=256,
                  heldout_size=256, log_every=512, eval_episodes=3, updates_per_step=1.0, checkpoint_every=512),
    "demo": dict(total_steps=100_000, n_envs=8, memory_size=100_000, updates_per_step=0.5, log_every=10_000,
                 eval_every=50_000),
    # Rusu's scale: a long teacher-filled memory and millions of student updates (a GPU job on Atari).
    "full": dict(total_steps=10_000_000, n_envs=8, memory_size=1_000_000, batch_size=32, lr=1e-4,
                 updates_per_step=2.0, learning_starts=50_000, heldout_size=10_000, log_every=100_000,
                 eval_every=1_000_000, checkpoint_every=500_000),
}


# A Nature-CNN student on Atari frames at Adam 1e-3 can die before it starts: the first two Pong students at the demo
# preset, seeds 0 and 1, both sat on the majority action for 10k steps, and seed 0 never left it (15 of its 16
# first-layer filters dead at 50k steps, held-out agreement 0.336 to 70k, when it was stopped). At 2.5e-4 (the
# Nature/PPO Atari step size) seed 0 plays 21.0 after 30k steps (data/results/pong_lr_probe.csv).
FAMILY_LR = {"nature_cnn": 2.5e-4}


def default_lr(family: str) -> float:
    """The distillation step size for a student family when the config does not set one."""
    return FAMILY_LR.get(family, 1e-3)


def distill_config(preset: str, teacher: str, **overrides) -> DistillConfig:
    return with_preset(DistillConfig, preset, DISTILL_PRESETS, fixed={"teacher": str(teacher)}, **overrides)


def beta_schedule(spec: str):
    """'1', '0.5' or 'linear:START:END' -> f(progress in [0, 1]) -> share of steps the teacher acts."""
    try:
        if spec.startswith("linear:"):
            _, a, b = spec.split(":")
            a, b = float(a), float(b)
            fn = lambda p: a + (b - a) * min(max(p, 0.0), 1.0)  # noqa: E731
        else:
            c = float(spec)
            fn = lambda p: c  # noqa: E731
    except ValueError:
        raise ValueError(f"beta must be a number in [0, 1] or linear:START:END, got {spec!r}") from None
    if not all(0.0 <= fn(p) <= 1.0 for p in (0.0, 1.0)):
        raise ValueError(f"beta must stay within [0, 1], got {spec!r}")
    return fn


def load_teacher(path: str):
    """(policy, card, EnvSpec) of a teacher run folder or shipped teacher name."""
    from ..teachers import teacher_path

    folder = teacher_path(path)
    run = Run(folder)
    card, config = run.card, run.config
    return load_policy(folder), card, EnvSpec.from_dict(config["env_spec"])


def student_spec_for(config: DistillConfig, teacher_spec):
    """The student's NetSpec: a size preset (a share of the teacher's parameters), a width, or its own layers."""
    family = config.student_family or teacher_spec.family
    if config.student_layers is not None:
        conv, hidden = parse_layers(config.student_layers)
        spec = NetSpec(family, teacher_spec.obs_shape, teacher_spec.n_actions, conv, hidden, teacher_spec.obs_scale)
        if config.student_net is not None:
            preset = student_spec_for(dataclasses.replace(config, student_layers=None), teacher_spec)
            have, want = spec_params(spec), spec_params(preset)
            if abs(math.log(have / want)) > math.log(1.15):
                raise ValueError(
                    f"layers {config.student_layers} have {have:,} parameters, {have / want:.0%} of the "
                    f"{config.student_net} student's {want:,} (layers {format_layers(preset)}); give a shape within "
                    f"15% of it, or leave out the size preset to take these layers at any size")
        return spec
    if config.student_net is None:
        return make_spec(teacher_spec.obs_shape, teacher_spec.n_actions, family, config.student_width,
                         teacher_spec.obs_scale)
    if family == teacher_spec.family:
        return preset_spec(config.student_net, teacher_spec)
    base = make_spec(teacher_spec.obs_shape, teacher_spec.n_actions, family, 1.0, teacher_spec.obs_scale)
    share = PRESET_FRACTIONS[config.student_net] * spec_params(teacher_spec) / spec_params(base)
    return spec_for_fraction(base, share)


@torch.no_grad()
def teacher_states(teacher, env: EnvSpec, n: int, seed: int, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """n states from the teacher's own (epsilon-greedy) play on other seeds, with its outputs: a held-out set."""
    envs, _ = make_env(env.env_id, 4, seed, **env.settings)
    obs, _ = envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    states = []
    while sum(len(s) for s in states) < n:
        states.append(obs.copy())
        act = teacher.act(obs).numpy()
        act = np.where(rng.random(len(act)) < epsilon, rng.integers(0, env.n_actions, len(act)), act)
        obs, *_ = envs.step(act)
    envs.close()
    obs_N = torch.as_tensor(np.concatenate(states)[:n])
    return obs_N, teacher.logits(obs_N)


def fit(optimizer, loss_fn, student_logits: torch.Tensor, teacher_out: torch.Tensor) -> float:
    """One gradient step of the distillation loss on a minibatch; returns the loss. Every loop (single-game,
    real-time, multi-task) steps its student through here."""
    loss = loss_fn(student_logits, teacher_out)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


class WeightAverage:
    """An exponential moving average of a network's weights, updated after each optimizer step. The decay
    warms up as ``min(decay, (1 + n) / (10 + n))`` after n updates, so that the average does not hold on to the
    random initial weights in a short run. ``model`` is the averaged copy, a network of the same spec."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema (the weight-average decay) must be in (0, 1), e.g. 0.999, got {decay!r}; "
                             "0 turns the average off")
        self.decay, self.n = decay, 0
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        for avg, p in zip(self.model.parameters(), model.parameters()):
            avg.lerp_(p, 1.0 - d)
        for avg, b in zip(self.model.buffers(), model.buffers()):
            avg.copy_(b)
        self.n += 1


def student_update(student, optimizer, loss_fn, memory: ReplayMemory, batch_size: int,
                   rng: np.random.Generator) -> float:
    """One supervised step on a minibatch of stored (state, teacher output) pairs; returns the loss."""
    obs_B, extras = memory.sample_states(batch_size, rng)
    return fit(optimizer, loss_fn, student.logits(obs_B), extras["teacher"])


def distill(config: DistillConfig, out: str | Path, resume: bool = False, progress_bar: bool = True,
            callback=None) -> dict:
    """Distil the teacher into a student; writes the run folder ``out`` and returns its card."""
    seed_everything(config.seed)
    teacher, teacher_card, env = load_teacher(config.teacher)
    teacher.eval()
    s_spec = student_spec_for(config, teacher.spec)
    check_actions(s_spec.n_actions, teacher.n_actions)
    student = build(s_spec, "pi", seed=config.seed)
    loss_fn = get_loss(config.loss, config.tau)
    beta = beta_schedule(config.beta)
    if config.lr is None:  # the run's config.json records the step size it used
        config = dataclasses.replace(config, lr=default_lr(s_spec.family))
    optimizer = torch.optim.Adam(student.parameters(), lr=config.lr)
    average = WeightAverage(student, config.ema) if config.ema else None  # checks the decay before anything is written
    policy = average.model if average else student  # the student that acts, is evaluated and is saved

    envs, _ = make_env(env.env_id, config.n_envs, config.seed, **env.settings)
    run = open_run(out, config, env, resume)
    memory = ReplayMemory(config.memory_size, env.obs_shape, env.obs_dtype, config.n_envs,
                          env.settings.get("stack_num", 1), extras={"teacher": ((env.n_actions,), np.float32)})
    rng = np.random.default_rng(config.seed)
    heldout_obs, heldout_t = teacher_states(teacher, env, config.heldout_size, config.seed + 777_777,
                                            config.teacher_epsilon)

    step, updates, queries, wall_before, eval_seconds = 0, 0, 0, 0.0, 0.0
    if resume and run.has_checkpoint():
        arrays, state = run.load_checkpoint()
        student.load_state_dict({k[8:]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("student.")})
        if average:
            average.model.load_state_dict({k[4:]: torch.from_numpy(v.copy()) for k, v in arrays.items()
                                           if k.startswith("ema.")})
            average.n = state["ema_updates"]
        load_optimizer_arrays(optimizer, arrays, state["optimizer"])
        memory.load_state_arrays({k[7:]: v for k, v in arrays.items() if k.startswith("memory.")})
        step, updates, queries, wall_before = state["step"], state["updates"], state["teacher_queries"], state["wall_seconds"]
        eval_seconds = state.get("eval_seconds", 0.0)
        set_rng_state(rng, state["rng"])
        set_torch_rng_state(arrays["torch_rng"])
    obs, _ = envs.reset(seed=resume_seed(config.seed, step))
    collector = Collector(envs, env, memory, obs, clip_rewards=False)
    t0, losses, owed = time.time(), [], 0.0
    held_tau = config.tau if config.loss == "kl" else 1.0
    next_log, next_eval, next_ckpt = step + config.log_every, step + (config.eval_every or 10**18), step + config.checkpoint_every
    bar = progress(config.total_steps, step, f"distill {config.loss} -> {s_spec.family}", progress_bar)

    while step < config.total_steps:
        # -- collect: the teacher labels every state once; beta decides who acts ---------------------------
        b = beta(step / config.total_steps)
        labels: dict = {}

        def act(obs):
            with torch.no_grad():
                t_BA = teacher.logits(obs)
                s_act = policy.act(obs, greedy=config.student_greedy).numpy()
            labels["teacher"] = t_BA.numpy()
            t_act = t_BA.argmax(-1).numpy()
            t_act = np.where(rng.random(len(t_act)) < config.teacher_epsilon,
                             rng.integers(0, env.n_actions, len(t_act)), t_act)
            return np.where(rng.random(len(t_act)) < b, t_act, s_act)

        collector.step(act, lambda obs: labels)
        queries += config.n_envs
        step += config.n_envs
        bar.update(config.n_envs)

        # -- learn: supervised updates on stored (state, teacher output) pairs -----------------------------
        if step >= config.learning_starts:
            owed += config.updates_per_step
            while owed >= 1:
                owed -= 1
                losses.append(student_update(student, optimizer, loss_fn, memory, config.batch_size, rng))
                updates += 1
                if average:
                    average.update(student)

        wall = wall_before + time.time() - t0
        done = step >= config.total_steps
        if step >= next_log or done:
            t_eval = time.time()
            row = {"losses/distill": float(np.mean(losses)) if losses else None, "charts/beta": b,
                   "charts/updates": updates, "charts/teacher_queries": queries,
                   **{f"heldout/{k}": v for k, v in agreement(policy, teacher, heldout_obs, held_tau).items()},
                   "wall_seconds": round(wall, 2)}
            if average:  # the raw weights beside the average: what averaging buys, on the same held-out states
                row.update({f"heldout/{k}_unaveraged": v
                            for k, v in agreement(student, teacher, heldout_obs, held_tau).items()})
            if step >= next_eval:
                row["charts/student_return"] = evaluate(policy, env.env_id, min(10, config.eval_episodes),
                                                        config.eval_seed, env.settings).mean
                next_eval += config.eval_every
            # Measuring is not training: train_seconds leaves out the held-out and return evaluations
            # (``wall`` was read before this row's, which count from the next row on).
            row["train_seconds"] = round(wall - eval_seconds, 2)
            eval_seconds += time.time() - t_eval
            run.log(step, **row)
            if callback:
                callback({"step": step, **row})
            bar.set_postfix(loss=f"{row['losses/distill'] or 0:.3f}", agree=f"{row['heldout/agreement']:.2f}")
            losses = []
            next_log += config.log_every
        if step >= next_ckpt or done:
            arrays, opt_meta = optimizer_arrays(optimizer)
            arrays.update({f"student.{k}": v.numpy() for k, v in student.state_dict().items()})
            arrays.update({f"memory.{k}": v for k, v in memory.state_arrays().items()})
            arrays["torch_rng"] = torch_rng_state()
            extra = {}
            if average:
                arrays.update({f"ema.{k}": v.numpy() for k, v in average.model.state_dict().items()})
                extra["ema_updates"] = average.n
            run.save_checkpoint(arrays, {"step": step, "updates": updates, "teacher_queries": queries,
                                         "wall_seconds": wall, "eval_seconds": eval_seconds, "rng": rng_state(rng),
                                         "optimizer": opt_meta, **extra})
            next_ckpt += config.checkpoint_every
    bar.close()
    envs.close()
    wall = wall_before + time.time() - t0

    # -- evaluate student and teacher on the same seeds (the teacher's returns from its card if it holds them) --
    s_eval = evaluate(policy, env.env_id, config.eval_episodes, config.eval_seed, env.settings)
    t_eval = evaluate_teacher(teacher, teacher_card, env.env_id, config.eval_episodes, config.eval_seed, env.settings)
    held = agreement(policy, teacher, heldout_obs, held_tau)
    save_policy(run.file("model.safetensors"), policy, env_id=env.env_id, algo="distill", teacher=config.teacher)
    unaveraged = {}
    if average:  # the final raw weights on the same seeds: a paired measure of what the average changed
        raw = evaluate(student, env.env_id, config.eval_episodes, config.eval_seed, env.settings)
        unaveraged = {"ema_updates": average.n, "unaveraged": {
            **raw.summary("return"), "pct_of_teacher": 100.0 * raw.mean / t_eval.mean if t_eval.mean else None,
            **agreement(student, teacher, heldout_obs, held_tau)}}
    card = {
        "env_id": env.env_id, "algo": "distill", "preset": config.preset, "seed": config.seed,
        "teacher": config.teacher, "teacher_params": teacher.n_params, "params": student.n_params,
        "student_params": student.n_params, "compression": student.n_params / teacher.n_params,
        "student_net": config.student_net, "net": dataclasses.asdict(s_spec), "kind": "pi",
        "loss": config.loss, "tau": config.tau, "beta": config.beta, "ema": config.ema, "env_steps": step,
        "frames": step * int(env.settings.get("frameskip", 1)), "updates": updates, "teacher_queries": queries,
        "wall_seconds": round(wall, 1), "eval_seed": config.eval_seed,
        **s_eval.summary("return"), "returns": s_eval.returns.tolist(),
        "teacher_return_mean": t_eval.mean, "teacher_return_std": t_eval.std,
        "pct_of_teacher": 100.0 * s_eval.mean / t_eval.mean if t_eval.mean else None,
        "agreement": held["agreement"], "kl": held["kl"], "env_settings": env.settings,
        "action_meanings": list(env.action_meanings), "machine": machine(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **unaveraged,
    }
    run.write_card(card)
    return card
