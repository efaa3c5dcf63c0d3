"""Double DQN (van Hasselt et al. 2016) with a target network and Huber loss, over vectorised envs.

The ``full`` preset is Nature DQN's scale (Mnih et al. 2015): 10M env steps, 1M replay, batch 32, a train
step every 4 env steps, epsilon 1 -> 0.1 over the first 1M steps, target sync every 10k updates (cleanrl's
``dqn_atari.py`` syncs every 1000 steps with Adam 1e-4, as here). ``demo`` and ``smoke`` scale that down.
The trained network ends as a ``Policy`` of kind ``"q"`` (logits = Q-values).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import ClassVar
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..collect import Collector
from ..config import OnDevice, Preset, check, with_preset
from ..envs import family_of, make_env
from ..hardware import place, resolve_device
from ..memory import ReplayMemory, stack_padding
from ..nets import build, make_spec
from ..runs import Checkpointer
from .common import finish_run, open_run, progress, resume_seed, seed_everything


@dataclass(frozen=True)
class DQNConfig(OnDevice):
    FLAGS: ClassVar[dict] = {"env_id": "env"}

    env_id: str = "MinAtar/Breakout-v1"
    """Env id (see workbench.envs)."""
    preset: Preset = "demo"
    """Which preset filled the defaults: smoke, demo or full."""
    seed: int = 0
    """Seeds torch, numpy and the envs: same seed, same numbers on the same machine."""
    total_steps: int = 1_000_000
    """Env steps summed over all envs."""
    n_envs: int = 4
    """Parallel envs; every vector step adds n_envs transitions."""
    buffer_size: int = 100_000
    """Replay capacity in transitions (Nature: 1M)."""
    batch_size: int = 32
    """Transitions per gradient step (Nature: 32)."""
    lr: float = 1e-4
    """Adam learning rate (cleanrl; Nature used RMSProp 2.5e-4)."""
    gamma: float = 0.99
    """Discount factor."""
    train_every: int = 4
    """Env steps per gradient step (Nature: 4)."""
    target_every: int = 1_000
    """Env steps between target-network syncs."""
    learning_starts: int = 5_000
    """Env steps of random play before learning."""
    eps_start: float = 1.0
    """Exploration epsilon at the start."""
    eps_end: float = 0.01
    """Exploration epsilon after eps_fraction of the run (Nature: 0.1; cleanrl: 0.01)."""
    eps_fraction: float = 0.1
    """Share of total_steps over which epsilon decays linearly (Nature: 1M of 10M)."""
    double: bool = True
    """Double DQN targets: the online net picks the next action, the target net values it."""
    width: float = 1.0
    """Width multiplier of the env family's base network (nets.BASE)."""
    log_every: int = 20_000
    """Env steps between metrics lines."""
    checkpoint_every: int = 100_000
    """Env steps between resume checkpoints (the replay memory is saved too)."""
    eval_episodes: int = 30
    """Episodes of the final evaluation (greedy, fixed seeds)."""
    eval_seed: int = 10_000
    """Env seed of the first evaluation episode."""
    env_settings: dict = field(default_factory=dict)
    """Overrides of the env family's behaviour settings (recorded in the run)."""

    def __post_init__(self):
        check(self, positive=("total_steps", "n_envs", "buffer_size", "batch_size", "lr", "train_every",
                            "target_every", "width", "log_every", "checkpoint_every", "eval_episodes"),
              non_negative=("learning_starts", "seed", "eval_seed"),
              probability=("gamma", "eps_start", "eps_end", "eps_fraction"))


DQN_PRESETS = {
    "smoke": {
        "classic": dict(total_steps=1_000, n_envs=2, buffer_size=1_000, learning_starts=200, eval_episodes=3,
                        log_every=250, target_every=200),
        "minatar": dict(total_steps=1_000, n_envs=2, buffer_size=1_000, learning_starts=200, eval_episodes=3,
                        log_every=250, target_every=200),
        "ale": dict(total_steps=400, n_envs=2, buffer_size=1_000, learning_starts=200, eval_episodes=1,
                    log_every=200, target_every=200, env_settings={"max_episode_frames": 2000}),
    },
    "demo": {
        "classic": dict(total_steps=100_000, n_envs=1, buffer_size=50_000, learning_starts=1_000, lr=2.5e-4,
                        train_every=1, target_every=500, eps_end=0.05, eps_fraction=0.3, batch_size=128,
                        log_every=5_000),
        # MinAtar paper: 100k replay, batch 32, 1 update per step, target sync 1000, eps 1 -> 0.1 over 100k.
        "minatar": dict(total_steps=1_000_000, n_envs=4, buffer_size=100_000, train_every=1, learning_starts=5_000,
                        eps_end=0.1, eps_fraction=0.1),
        "ale": dict(total_steps=2_000_000, n_envs=4, buffer_size=200_000, learning_starts=20_000, eval_episodes=10),
    },
    "full": {
        "classic": dict(total_steps=500_000, n_envs=1, buffer_size=100_000, lr=2.5e-4, train_every=1, target_every=500),
        "minatar": dict(total_steps=5_000_000, n_envs=4, buffer_size=100_000, train_every=1, eps_end=0.1,
                        eps_fraction=0.02),
        "ale": dict(total_steps=10_000_000, n_envs=4, buffer_size=1_000_000, learning_starts=80_000,
                    target_every=1_000, eps_end=0.01, eps_fraction=0.1),
    },
}


def dqn_config(preset: str, env_id: str, **overrides) -> DQNConfig:
    return with_preset(DQNConfig, preset, DQN_PRESETS, family_of(env_id), {"env_id": env_id}, **overrides)


def train_dqn(config: DQNConfig, out: str | Path, resume: bool = False, progress_bar: bool = True,
              callback=None, observer=None) -> dict:
    """Train, write the run folder ``out``, return its card. ``callback(row)`` sees every metrics row;
    ``observer(q, states, step)`` sees the Q-network after each learning step with the states collected
    since the previous call (real-time distillation hangs a student here)."""
    seed_everything(config.seed)
    device = resolve_device(config.device)
    envs, spec = make_env(config.env_id, config.n_envs, config.seed, **config.env_settings)
    q = build(make_spec(spec.obs_shape, spec.n_actions, width=config.width), "q", seed=config.seed)
    q_target = copy.deepcopy(q)
    # Transitions cross to the device in pinned minibatches (the memory's device mirror serves states alone).
    where = place(device, None, q, q_target)
    run = open_run(out, config, spec, resume, **where)
    optimizer = torch.optim.Adam(q.parameters(), lr=config.lr)
    stack = spec.settings.get("stack_num", 1)
    memory = ReplayMemory(config.buffer_size, spec.obs_shape, spec.obs_dtype, config.n_envs, stack,
                          pad=stack_padding(spec.settings))
    rng = np.random.default_rng(config.seed)

    checkpointer = Checkpointer(run, nets={"q": q, "target": q_target}, optimizers={"optim": optimizer},
                                memories={"memory": memory}, rng=rng)
    state = (checkpointer.restore() if resume else None) or {}
    step, wall_before = state.get("step", 0), state.get("wall_seconds", 0.0)
    # Envs cannot be snapshotted: a resumed run restarts them on a seed derived from where it stopped.
    obs, _ = envs.reset(seed=resume_seed(config.seed, step))
    collector = Collector(envs, spec, memory, obs)
    recent, losses, q_means, fresh_states = [], [], [], []
    t0 = time.perf_counter()
    next_log, next_ckpt = step + config.log_every, step + config.checkpoint_every
    next_train, next_target = step + config.train_every, step + config.target_every
    bar = progress(config.total_steps, step, f"dqn {config.env_id}", progress_bar)

    while step < config.total_steps:
        # -- act epsilon-greedy ---------------------------------------------------------------------------
        eps = max(config.eps_end, config.eps_start - (config.eps_start - config.eps_end) * step
                  / max(1, config.eps_fraction * config.total_steps))

        def act(obs):
            random_B = rng.integers(0, spec.n_actions, config.n_envs)
            if step < config.learning_starts:
                return random_B
            return np.where(rng.random(config.n_envs) < eps, random_B, q.act(obs).numpy())

        if observer:
            fresh_states.append(collector.obs.copy())
        recent += [r for r, _ in collector.step(act)]
        step += config.n_envs
        bar.update(config.n_envs)

        # -- learn ---------------------------------------------------------------------------------------
        if step >= config.learning_starts:
            while next_train <= step:
                next_train += config.train_every
                b = memory.sample(config.batch_size, rng, device)
                with torch.no_grad():
                    next_q_BA = q_target.logits(b.next_obs)
                    if config.double:
                        next_a_B = q.logits(b.next_obs).argmax(-1, keepdim=True)
                        next_v_B = next_q_BA.gather(1, next_a_B).squeeze(1)
                    else:
                        next_v_B = next_q_BA.max(-1).values
                    target_B = b.reward + config.gamma * next_v_B * (1.0 - b.terminated)
                q_B = q.logits(b.obs).gather(1, b.action[:, None]).squeeze(1)
                loss = F.smooth_l1_loss(q_B, target_B)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                q_means.append(q_B.mean().item())
            if step >= next_target:
                q_target.load_state_dict(q.state_dict())
                next_target += config.target_every
            if observer and fresh_states:
                observer(q, torch.as_tensor(np.concatenate(fresh_states)), step)
                fresh_states = []
        else:
            next_train, next_target = step + config.train_every, step + config.target_every

        wall = wall_before + time.perf_counter() - t0
        if step >= next_log or step >= config.total_steps:
            row = {
                "charts/episodic_return": float(np.mean(recent)) if recent else None, "charts/episodes": len(recent),
                "charts/epsilon": eps, "charts/SPS": int(step / max(wall, 1e-9)),
                "losses/td_loss": float(np.mean(losses)) if losses else None,
                "losses/q_values": float(np.mean(q_means)) if q_means else None, "wall_seconds": round(wall, 2),
            }
            run.log(step, **row)
            if callback:
                callback({"step": step, **row})
            if recent:
                bar.set_postfix(ret=f"{np.mean(recent):.1f}", eps=f"{eps:.2f}")
            recent, losses, q_means = [], [], []
            next_log += config.log_every
        if step >= next_ckpt or step >= config.total_steps:
            checkpointer.save({"step": step, "wall_seconds": wall})
            next_ckpt += config.checkpoint_every
    bar.close()
    envs.close()
    wall = wall_before + time.perf_counter() - t0
    return finish_run(run, q, config, spec, "dqn", step, wall, {"replay_bytes": memory.nbytes(), **where})
