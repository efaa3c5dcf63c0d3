"""PPO over vectorised envs (Schulman et al. 2017), the fast way to a good teacher on a CPU.

Reads top to bottom like cleanrl's ``ppo.py``/``ppo_atari.py``: collect ``n_envs x n_steps``, GAE, then
``update_epochs`` passes of clipped-surrogate minibatch updates. The trained actor ends as a ``Policy`` of
kind ``"pi"`` (logits = policy logits); its value head is training-only and not counted as acting params.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal
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
    activation: Literal["relu", "tanh"] = "relu"
    """Nonlinearity of the fully connected hidden layers (classic control: tanh, as cleanrl's ppo.py)."""
    critic: Literal["head", "separate"] = "head"
    """The critic: a value head on the actor's trunk, or a trunk of its own (classic control: separate, as cleanrl's
    ppo.py; shared on Acrobot, the value loss at returns near -100 swamps the policy's features and it never swings
    up)."""
    init: Literal["torch", "orthogonal"] = "torch"
    """Initial weights: PyTorch's default, or cleanrl's and SB3's orthogonal one (action head at gain 0.01: a near
    uniform first policy; classic control: orthogonal)."""
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


# cleanrl ppo.py's agent for classic control: tanh, a critic of its own, orthogonal initial weights. With the
# workbench's MinAtar/Atari agent instead (relu, shared trunk, PyTorch's init) Acrobot never reached the goal in
# 300k steps: the policy's entropy fell to 0.02 within 30k steps (docs/lab-notes/dual-policy-distillation.md).
CLASSIC_AGENT = dict(activation="tanh", critic="separate", init="orthogonal")
# Per preset and env family. smoke: seconds, for tests; demo: minutes on 2 cores; full: published scale.
PPO_PRESETS = {
    "smoke": {
        "classic": dict(total_steps=2048, n_envs=4, n_steps=128, n_minibatches=4, eval_episodes=3, log_every=512,
                        **CLASSIC_AGENT),
        "minatar": dict(total_steps=2048, n_envs=8, n_steps=64, eval_episodes=3, log_every=512),
        "ale": dict(total_steps=512, n_envs=2, n_steps=64, n_minibatches=2, update_epochs=1, lr=2.5e-4,
                    clip_coef=0.1, eval_episodes=1, log_every=256, env_settings={"max_episode_frames": 2000}),
    },
    "demo": {
        # cleanrl ppo.py on CartPole, with a bigger teacher net and more steps so greedy play holds at 500.
        "classic": dict(total_steps=200_000, n_envs=8, n_steps=256, n_minibatches=4, update_epochs=4, lr=2.5e-4,
                        log_every=10_000, checkpoint_every=50_000, **CLASSIC_AGENT),
        "minatar": dict(total_steps=3_000_000),
        "ale": dict(total_steps=2_000_000, n_envs=8, n_steps=128, n_minibatches=4, lr=2.5e-4, clip_coef=0.1,
                    life_loss_terminal=True, eval_episodes=10),
    },
    "full": {
        "classic": dict(total_steps=500_000, n_envs=8, n_steps=256, n_minibatches=4, lr=2.5e-4, **CLASSIC_AGENT),
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


def ppo_agent(config: PPOConfig, obs_shape: tuple, n_actions: int, seed: int | None = None):
    """The actor-critic ``config`` trains: the env family's base net at its width, activation, critic and init."""
    spec = make_spec(obs_shape, n_actions, width=config.width, value_head=True)
    spec = replace(spec, activation=config.activation, critic=config.critic)
    return build(spec, "pi", seed=seed, init=config.init)


def restore(run, agent: nn.Module, optimizer: torch.optim.Optimizer,
            rng: np.random.Generator) -> tuple[int, int, float]:
    """Load ``run``'s resume checkpoint into the agent, optimizer and generators (strictly: a checkpoint of another
    network fails here); return (env steps, updates, wall seconds) it had reached."""
    state = checkpointer(run, agent, optimizer, rng).restore()
    return state["global_step"], state["update"], state["wall_seconds"]


def checkpointer(run, agent: nn.Module, optimizer: torch.optim.Optimizer, rng: np.random.Generator,
                 name: str = "agent", optim: str = "optim") -> Checkpointer:
    return Checkpointer(run, nets={name: agent}, optimizers={optim: optimizer}, rng=rng)


class PPOLearner:
    """One PPO agent with its own envs, rollout buffers, optimizer and minibatch RNG: ``collect`` plays one rollout
    of ``n_envs x n_steps`` and computes its advantages, ``learn`` makes the clipped-surrogate updates on it.
    ``train_ppo`` drives one learner; dual policy distillation drives two side by side. The run folder, logging and
    checkpoints are the driver's."""

    def __init__(self, config: PPOConfig, device: torch.device):
        self.config, self.device = config, device
        self.envs, self.spec = make_env(config.env_id, config.n_envs, config.seed, **config.env_settings)
        self.agent = ppo_agent(config, self.spec.obs_shape, self.spec.n_actions, seed=config.seed)
        self.net_spec = self.agent.spec
        self.where = place(device, None, self.agent)
        self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=config.lr, eps=1e-5)
        self.rng = np.random.default_rng(config.seed)
        self.batch_size = config.n_envs * config.n_steps
        self.minibatch = self.batch_size // config.n_minibatches
        self.n_updates = max(1, config.total_steps // self.batch_size)
        self.global_step = self.update = 0
        T, B, obs_shape = config.n_steps, config.n_envs, self.spec.obs_shape
        self.obs_TB = np.zeros((T, B) + obs_shape, dtype=self.spec.obs_dtype)
        self.act_TB = np.zeros((T, B), dtype=np.int64)
        self.logp_TB, self.rew_TB, self.done_TB, self.val_TB = (np.zeros((T, B), dtype=np.float32) for _ in range(4))
        self.tracker = EpisodeTracker(B)
        self.recent: list[float] = []  # returns of the episodes that ended since the driver last took them

    def checkpointer(self, run, name: str = "agent", optim: str = "optim") -> Checkpointer:
        return checkpointer(run, self.agent, self.optimizer, self.rng, name, optim)

    def start(self) -> None:
        """Reset the envs, on a seed derived from the update a resumed learner restarts at (envs cannot be
        snapshotted)."""
        self.obs, info = self.envs.reset(seed=resume_seed(self.config.seed, self.update))
        if self.config.life_loss_terminal and "lives" not in info:
            raise ValueError(f"life_loss_terminal needs an env that counts lives (ALE); {self.config.env_id} does "
                             "not: set life_loss_terminal=false")
        self.lives = info["lives"].copy() if self.config.life_loss_terminal else None

    def collect(self) -> None:
        """One rollout, then GAE: the batch ``learn`` uses is left in ``self.b_obs`` and its companions."""
        config, agent, spec = self.config, self.agent, self.spec
        if config.anneal_lr:
            self.optimizer.param_groups[0]["lr"] = config.lr * (1.0 - self.update / self.n_updates)
        agent.eval()
        obs = self.obs
        for t in range(config.n_steps):
            with torch.no_grad():
                logits_BA, value_B = agent.logits_and_value(obs)
                dist = torch.distributions.Categorical(logits=logits_BA)
                action_B = dist.sample()
            self.obs_TB[t], self.act_TB[t] = obs, action_B.cpu().numpy()
            self.logp_TB[t], self.val_TB[t] = dist.log_prob(action_B).cpu().numpy(), value_B.cpu().numpy()
            obs, reward, term, trunc, info = self.envs.step(self.act_TB[t])
            reward = reward.astype(np.float32)
            # A copy: the bootstrap below must not leak into the logged (real) episode returns.
            reward_learn = np.sign(reward) if spec.settings.get("reward_clipping") else reward.copy()
            if trunc.any():
                # A time limit is not a terminal state: bootstrap from the value of the state it cut off.
                with torch.no_grad():
                    for i in np.flatnonzero(trunc & ~term):
                        _, v = agent.logits_and_value(info["final_obs"][i][None])
                        reward_learn[i] += config.gamma * v.item()
            done_learn, self.lives = learner_done(term, trunc, self.lives, info)
            self.rew_TB[t], self.done_TB[t] = reward_learn, done_learn
            for ret, length in self.tracker.update(reward, term | trunc):
                self.recent.append(ret)
        self.obs = obs
        self.global_step += self.batch_size
        with torch.no_grad():
            _, next_value = agent.logits_and_value(obs)
        adv_TB, ret_TB = gae(self.rew_TB, self.val_TB, self.done_TB, next_value.cpu().numpy(), config.gamma,
                             config.gae_lambda)
        self.b_obs = to_device(self.obs_TB.reshape((self.batch_size,) + spec.obs_shape), self.device)
        self.b_act, self.b_logp, self.b_adv, self.b_ret, self.b_val = (
            to_device(a.reshape(-1), self.device) for a in (self.act_TB, self.logp_TB, adv_TB, ret_TB, self.val_TB))

    def learn(self) -> dict:
        """``update_epochs`` passes of clipped-surrogate minibatch updates on the last rollout; the last minibatch's
        losses and the epoch's clip fraction, as metrics."""
        config, agent, optimizer = self.config, self.agent, self.optimizer
        agent.train()
        clipfracs = []
        for _epoch in range(config.update_epochs):
            order = self.rng.permutation(self.batch_size)
            for start in range(0, self.batch_size, self.minibatch):
                mb = torch.as_tensor(order[start:start + self.minibatch], device=self.device)
                logits_BA, value_B = agent.logits_and_value(self.b_obs[mb])
                dist = torch.distributions.Categorical(logits=logits_BA)
                logratio = dist.log_prob(self.b_act[mb]) - self.b_logp[mb]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs.append(float(((ratio - 1.0).abs() > config.clip_coef).float().mean()))
                adv = self.b_adv[mb]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)).mean()
                v_clipped = self.b_val[mb] + (value_B - self.b_val[mb]).clamp(-config.clip_coef, config.clip_coef)
                v_loss = 0.5 * torch.max((value_B - self.b_ret[mb]) ** 2, (v_clipped - self.b_ret[mb]) ** 2).mean()
                entropy = dist.entropy().mean()
                loss = pg_loss - config.ent_coef * entropy + config.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
                optimizer.step()
        self.update += 1
        return {"charts/learning_rate": optimizer.param_groups[0]["lr"], "losses/policy_loss": pg_loss.item(),
                "losses/value_loss": v_loss.item(), "losses/entropy": entropy.item(),
                "losses/approx_kl": approx_kl.item(), "losses/clipfrac": float(np.mean(clipfracs))}

    def take_returns(self) -> list[float]:
        """The returns of the episodes that ended since the last call."""
        out, self.recent = self.recent, []
        return out

    def policy(self):
        """The actor alone (same trunk and head, no critic): what a run ships."""
        policy = build(replace(self.net_spec, value_head=False, critic="head"), "pi").to(self.device)
        policy.load_state_dict({k: v for k, v in self.agent.state_dict().items() if not k.startswith("value.")})
        return policy


def train_ppo(config: PPOConfig, out: str | Path, resume: bool = False, progress_bar: bool = True,
              callback=None, observer=None) -> dict:
    """Train, write the run folder ``out``, return its card. ``callback(row)`` sees every metrics row;
    ``observer(agent, states, step)`` sees the agent after each update with the states of the rollout it
    learned from (real-time distillation hangs a student here)."""
    seed_everything(config.seed)
    device = resolve_device(config.device)
    learner = PPOLearner(config, device)
    run = open_run(out, config, learner.spec, resume, **learner.where)
    wall_before = 0.0
    if resume and run.has_checkpoint():
        state = learner.checkpointer(run).restore()
        learner.global_step, learner.update, wall_before = state["global_step"], state["update"], state["wall_seconds"]
    learner.start()
    recent: list[float] = []
    t0 = time.perf_counter()
    next_log, next_ckpt = learner.global_step + config.log_every, learner.global_step + config.checkpoint_every
    bar = progress(learner.n_updates * learner.batch_size, learner.global_step, f"ppo {config.env_id}", progress_bar)

    while learner.update < learner.n_updates:
        learner.collect()
        bar.update(learner.batch_size)
        recent += learner.take_returns()
        losses = learner.learn()
        if observer:
            learner.agent.eval()
            observer(learner.agent, learner.b_obs, learner.global_step)

        global_step, wall = learner.global_step, wall_before + time.perf_counter() - t0
        if global_step >= next_log or learner.update == learner.n_updates:
            row = {"charts/episodic_return": float(np.mean(recent)) if recent else None,
                   "charts/episodes": len(recent), "charts/SPS": int(global_step / max(wall, 1e-9)), **losses,
                   "wall_seconds": round(wall, 2)}
            run.log(global_step, **row)
            if callback:
                callback({"step": global_step, **row})
            if recent:
                bar.set_postfix(ret=f"{np.mean(recent):.1f}")
            recent = []
            next_log += config.log_every
        if global_step >= next_ckpt or learner.update == learner.n_updates:
            learner.checkpointer(run).save({"global_step": global_step, "update": learner.update,
                                            "wall_seconds": wall})
            next_ckpt += config.checkpoint_every
    bar.close()
    learner.envs.close()

    wall = wall_before + time.perf_counter() - t0
    return finish_run(run, learner.policy(), config, learner.spec, "ppo", learner.global_step, wall,
                      {"updates": learner.update, **learner.where})
