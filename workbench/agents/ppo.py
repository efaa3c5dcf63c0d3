"""PPO over vectorised envs (Schulman et al. 2017), the fast way to a good teacher on a CPU.

Reads top to bottom like cleanrl's ``ppo.py``/``ppo_atari.py``: collect ``n_envs x n_steps``, GAE, then
``update_epochs`` passes of clipped-surrogate minibatch updates. The trained actor ends as a ``Policy`` of
kind ``"pi"`` (logits = policy logits); its value head is training-only and not counted as acting params.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import ClassVar
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import OnDevice, Preset, check, with_preset
from ..envs import make_env
from ..hardware import place, resolve_device, to_device
from ..nets import build, make_spec
from ..runs import Checkpointer
from .common import EpisodeTracker, finish_run, open_run, progress, resume_seed, seed_everything


@dataclass(frozen=True)
class PPOConfig(OnDevice):
    FLAGS: ClassVar[dict] = {"env_id": "env"}

    env_id: str = "MinAtar/Breakout-v1"
    """Env id (see workbench.envs)."""
    preset: Preset = "demo"
    """Which preset filled the defaults: smoke, demo or full."""
    seed: int = 0
    """Seeds torch, numpy and the envs: same seed, same numbers on the same machine."""
    total_steps: int = 5_000_000
    """Env steps summed over all envs."""
    n_envs: int = 64
    """Parallel envs (gymnax/purejaxrl use 64-128 on MinAtar)."""
    n_steps: int = 128
    """Steps per env per rollout."""
    lr: float = 5e-4
    """Adam learning rate, linearly annealed to 0 if anneal_lr."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly to 0 over the run (cleanrl's default)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda of the advantage estimates."""
    n_minibatches: int = 8
    """Minibatches per epoch over each rollout."""
    update_epochs: int = 4
    """Passes over each rollout."""
    clip_coef: float = 0.2
    """Clip range of the probability ratio (cleanrl Atari: 0.1)."""
    ent_coef: float = 0.01
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Gradient norm clip."""
    life_loss_terminal: bool = False
    """Treat the loss of a life as the end of an episode in the learner's returns (cleanrl's EpisodicLifeEnv)
    while the env plays on: episodes, logged returns and the evaluation stay whole games. ALE only."""
    width: float = 1.0
    """Width multiplier of the env family's base network (nets.BASE)."""
    log_every: int = 50_000
    """Env steps between metrics lines."""
    checkpoint_every: int = 250_000
    """Env steps between resume checkpoints."""
    eval_episodes: int = 30
    """Episodes of the final evaluation (greedy, fixed seeds)."""
    eval_seed: int = 10_000
    """Env seed of the first evaluation episode."""
    env_settings: dict = field(default_factory=dict)
    """Overrides of the env family's behaviour settings (recorded in the run)."""

    def __post_init__(self):
        check(self, positive=("total_steps", "n_envs", "n_steps", "lr", "n_minibatches", "update_epochs", "width",
                            "log_every", "checkpoint_every", "eval_episodes"),
              non_negative=("clip_coef", "ent_coef", "vf_coef", "max_grad_norm", "seed", "eval_seed"),
              probability=("gamma", "gae_lambda"))


# Per preset and env family. smoke: seconds, for tests; demo: minutes on 2 cores; full: published scale.
PPO_PRESETS = {
    "smoke": {
        "classic": dict(total_steps=2048, n_envs=4, n_steps=128, n_minibatches=4, eval_episodes=3, log_every=512),
        "minatar": dict(total_steps=2048, n_envs=8, n_steps=64, eval_episodes=3, log_every=512),
        "ale": dict(total_steps=512, n_envs=2, n_steps=64, n_minibatches=2, update_epochs=1, lr=2.5e-4,
                    clip_coef=0.1, eval_episodes=1, log_every=256, env_settings={"max_episode_frames": 2000}),
    },
    "demo": {
        # cleanrl ppo.py on CartPole, with a bigger teacher net and more steps so greedy play holds at 500.
        "classic": dict(total_steps=200_000, n_envs=8, n_steps=256, n_minibatches=4, update_epochs=4, lr=2.5e-4,
                        log_every=10_000, checkpoint_every=50_000),
        "minatar": dict(total_steps=3_000_000),
        "ale": dict(total_steps=2_000_000, n_envs=8, n_steps=128, n_minibatches=4, lr=2.5e-4, clip_coef=0.1,
                    life_loss_terminal=True, eval_episodes=10),
    },
    "full": {
        "classic": dict(total_steps=500_000, n_envs=8, n_steps=256, n_minibatches=4, lr=2.5e-4),
        "minatar": dict(total_steps=10_000_000),
        # cleanrl ppo_atari.py: 10M steps, 8 envs x 128, clip 0.1, lr 2.5e-4, a life lost ends the learner's episode.
        "ale": dict(total_steps=10_000_000, n_envs=8, n_steps=128, n_minibatches=4, lr=2.5e-4, clip_coef=0.1,
                    life_loss_terminal=True),
    },
}


def learner_done(term, trunc, lives, info) -> tuple[np.ndarray, np.ndarray | None]:
    """Where the learner's episodes end after one vector step, and the lives to compare the next step with.

    ``lives`` None: where the game ended. Otherwise also where a life was lost (the count fell); a game that
    ended has reset to full lives, which is not a fall. Same-step autoreset: ``info`` holds the new counts.
    """
    done = term | trunc
    if lives is None:
        return done, None
    now = np.asarray(info["lives"]).copy()
    return done | (now < lives), now


def gae(rew_TB: np.ndarray, val_TB: np.ndarray, done_TB: np.ndarray, next_value: np.ndarray, gamma: float,
        lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimates (Schulman et al. 2016) of a rollout [T, B], and the value targets (advantage
    + value). ``done_TB[t]``: the episode ended at step t, so step t + 1 does not bootstrap it."""
    adv_TB = np.zeros_like(rew_TB)
    last = np.zeros(rew_TB.shape[1], dtype=np.float32)
    for t in reversed(range(len(rew_TB))):
        nv = next_value if t == len(rew_TB) - 1 else val_TB[t + 1]
        nonterminal = 1.0 - done_TB[t]
        delta = rew_TB[t] + gamma * nv * nonterminal - val_TB[t]
        last = delta + gamma * lam * nonterminal * last
        adv_TB[t] = last
    return adv_TB, adv_TB + val_TB


def ppo_config(preset: str, env_id: str, **overrides) -> PPOConfig:
    from ..envs import family_of

    return with_preset(PPOConfig, preset, PPO_PRESETS, family_of(env_id), {"env_id": env_id}, **overrides)


def restore(run, agent: nn.Module, optimizer: torch.optim.Optimizer,
            rng: np.random.Generator) -> tuple[int, int, float]:
    """Load ``run``'s resume checkpoint into the agent, optimizer and generators (strictly: a checkpoint of another
    network fails here); return (env steps, updates, wall seconds) it had reached."""
    state = checkpointer(run, agent, optimizer, rng).restore()
    return state["global_step"], state["update"], state["wall_seconds"]


def checkpointer(run, agent: nn.Module, optimizer: torch.optim.Optimizer, rng: np.random.Generator) -> Checkpointer:
    return Checkpointer(run, nets={"agent": agent}, optimizers={"optim": optimizer}, rng=rng)


def train_ppo(config: PPOConfig, out: str | Path, resume: bool = False, progress_bar: bool = True,
              callback=None, observer=None) -> dict:
    """Train, write the run folder ``out``, return its card. ``callback(row)`` sees every metrics row;
    ``observer(agent, states, step)`` sees the agent after each update with the states of the rollout it
    learned from (real-time distillation hangs a student here)."""
    seed_everything(config.seed)
    device = resolve_device(config.device)
    envs, spec = make_env(config.env_id, config.n_envs, config.seed, **config.env_settings)
    net_spec = make_spec(spec.obs_shape, spec.n_actions, width=config.width, value_head=True)
    agent = build(net_spec, "pi", seed=config.seed)
    where = place(device, None, agent)
    run = open_run(out, config, spec, resume, **where)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.lr, eps=1e-5)
    rng = np.random.default_rng(config.seed)
    batch_size = config.n_envs * config.n_steps
    minibatch = batch_size // config.n_minibatches
    n_updates = max(1, config.total_steps // batch_size)

    global_step, update, wall_before = 0, 0, 0.0
    if resume and run.has_checkpoint():
        global_step, update, wall_before = restore(run, agent, optimizer, rng)

    obs_TB = np.zeros((config.n_steps, config.n_envs) + spec.obs_shape, dtype=spec.obs_dtype)
    act_TB = np.zeros((config.n_steps, config.n_envs), dtype=np.int64)
    logp_TB = np.zeros((config.n_steps, config.n_envs), dtype=np.float32)
    rew_TB = np.zeros((config.n_steps, config.n_envs), dtype=np.float32)
    done_TB = np.zeros((config.n_steps, config.n_envs), dtype=np.float32)
    val_TB = np.zeros((config.n_steps, config.n_envs), dtype=np.float32)
    # Bootstrap values of truncated episodes' final observations are added to their last reward.
    # Envs cannot be snapshotted: a resumed run restarts them on a seed derived from where it stopped.
    obs, info = envs.reset(seed=resume_seed(config.seed, update))
    if config.life_loss_terminal and "lives" not in info:
        raise ValueError(f"life_loss_terminal needs an env that counts lives (ALE); {config.env_id} does not: "
                         "set life_loss_terminal=false")
    lives = info["lives"].copy() if config.life_loss_terminal else None
    tracker = EpisodeTracker(config.n_envs)
    recent: list[float] = []
    t0, next_log, next_ckpt = time.time(), global_step + config.log_every, global_step + config.checkpoint_every
    bar = progress(n_updates * batch_size, global_step, f"ppo {config.env_id}", progress_bar)

    while update < n_updates:
        if config.anneal_lr:
            optimizer.param_groups[0]["lr"] = config.lr * (1.0 - update / n_updates)

        # -- rollout ------------------------------------------------------------------------------------
        agent.eval()
        for t in range(config.n_steps):
            with torch.no_grad():
                logits_BA, value_B = agent.logits_and_value(obs)
                dist = torch.distributions.Categorical(logits=logits_BA)
                action_B = dist.sample()
            obs_TB[t], act_TB[t] = obs, action_B.cpu().numpy()
            logp_TB[t], val_TB[t] = dist.log_prob(action_B).cpu().numpy(), value_B.cpu().numpy()
            obs, reward, term, trunc, info = envs.step(act_TB[t])
            reward = reward.astype(np.float32)
            # A copy: the bootstrap below must not leak into the logged (real) episode returns.
            reward_learn = np.sign(reward) if spec.settings.get("reward_clipping") else reward.copy()
            if trunc.any():
                # A time limit is not a terminal state: bootstrap from the value of the state it cut off.
                with torch.no_grad():
                    for i in np.flatnonzero(trunc & ~term):
                        _, v = agent.logits_and_value(info["final_obs"][i][None])
                        reward_learn[i] += config.gamma * v.item()
            done_learn, lives = learner_done(term, trunc, lives, info)
            rew_TB[t], done_TB[t] = reward_learn, done_learn
            for ret, length in tracker.update(reward, term | trunc):
                recent.append(ret)
        global_step += batch_size
        bar.update(batch_size)

        # -- GAE ----------------------------------------------------------------------------------------
        with torch.no_grad():
            _, next_value = agent.logits_and_value(obs)
        adv_TB, ret_TB = gae(rew_TB, val_TB, done_TB, next_value.cpu().numpy(), config.gamma, config.gae_lambda)

        # -- update -------------------------------------------------------------------------------------
        agent.train()
        b_obs = to_device(obs_TB.reshape((batch_size,) + spec.obs_shape), device)
        b_act, b_logp, b_adv, b_ret, b_val = (to_device(a.reshape(-1), device)
                                              for a in (act_TB, logp_TB, adv_TB, ret_TB, val_TB))
        clipfracs = []
        for _epoch in range(config.update_epochs):
            order = rng.permutation(batch_size)
            for start in range(0, batch_size, minibatch):
                mb = torch.as_tensor(order[start:start + minibatch], device=device)
                logits_BA, value_B = agent.logits_and_value(b_obs[mb])
                dist = torch.distributions.Categorical(logits=logits_BA)
                logratio = dist.log_prob(b_act[mb]) - b_logp[mb]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs.append(float(((ratio - 1.0).abs() > config.clip_coef).float().mean()))
                adv = b_adv[mb]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)).mean()
                v_clipped = b_val[mb] + (value_B - b_val[mb]).clamp(-config.clip_coef, config.clip_coef)
                v_loss = 0.5 * torch.max((value_B - b_ret[mb]) ** 2, (v_clipped - b_ret[mb]) ** 2).mean()
                entropy = dist.entropy().mean()
                loss = pg_loss - config.ent_coef * entropy + config.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
                optimizer.step()
        update += 1
        if observer:
            agent.eval()
            observer(agent, b_obs, global_step)

        wall = wall_before + time.time() - t0
        if global_step >= next_log or update == n_updates:
            row = {
                "charts/episodic_return": float(np.mean(recent)) if recent else None,
                "charts/episodes": len(recent), "charts/SPS": int(global_step / max(wall, 1e-9)),
                "charts/learning_rate": optimizer.param_groups[0]["lr"], "losses/policy_loss": pg_loss.item(),
                "losses/value_loss": v_loss.item(), "losses/entropy": entropy.item(),
                "losses/approx_kl": approx_kl.item(), "losses/clipfrac": float(np.mean(clipfracs)),
                "wall_seconds": round(wall, 2),
            }
            run.log(global_step, **row)
            if callback:
                callback({"step": global_step, **row})
            if recent:
                bar.set_postfix(ret=f"{np.mean(recent):.1f}")
            recent = []
            next_log += config.log_every
        if global_step >= next_ckpt or update == n_updates:
            checkpointer(run, agent, optimizer, rng).save({"global_step": global_step, "update": update,
                                                           "wall_seconds": wall})
            next_ckpt += config.checkpoint_every
    bar.close()
    envs.close()

    wall = wall_before + time.time() - t0
    # The shipped policy is the actor alone: same trunk and head, no critic.
    policy = build(replace(net_spec, value_head=False), "pi").to(device)
    policy.load_state_dict({k: v for k, v in agent.state_dict().items() if not k.startswith("value.")})
    return finish_run(run, policy, config, spec, "ppo", global_step, wall, {"updates": update, **where})
