"""Reference loops that ``workbench bench`` measures the workbench's own training against, in the same process.

:class:`CleanrlStylePPO` is cleanrl's ``ppo_atari.py`` as it runs: one gymnasium ``SyncVectorEnv`` of
``*NoFrameskip-v4`` games behind Stable-Baselines3's Atari wrappers (no-op start, max-and-skip 4, a lost life ends the
learner's episode, FIRE on reset, clipped rewards), resized 84x84, gray, 4 frames stacked
(``imports.cleanrl_atari_env``, the chain imported teachers are checked against); the Nature CNN
actor-critic (orthogonal init) on ``obs / 255``; GAE, then ``update_epochs`` passes of ``n_minibatches`` minibatches
of the clipped PPO loss with a clipped value loss, normalised advantages, an entropy bonus and the gradient norm clipped
at 0.5. It is written out here because cleanrl is a set of scripts, not a library to import (its PyPI package is a
2021 snapshot on ``gym``). It needs the ``sb3`` extra for the wrappers.

Where it differs from the script it is, if anything, a little faster than the script: it keeps frames as uint8
(the script as float32), and leaves out the script's logging (approx. KL and clip fraction per minibatch,
TensorBoard) and its learning-rate annealing. Where the workbench differs from it is what the benchmark measures:
ale-py's C++ vector env on ``env_threads`` threads against Python wrappers on one, channels-last convolutions, and no
reset sequence after a lost life (``PPOConfig.life_loss_terminal`` ends the learner's episode while the game plays on).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


def _atari_env(game: str):
    from .imports import cleanrl_atari_env

    return lambda: cleanrl_atari_env(f"{game}NoFrameskip-v4")[0]


class CleanrlStylePPO:
    """cleanrl's PPO on Atari, stepped one rollout and one update at a time (:meth:`collect`, :meth:`learn`), like
    the workbench's ``PPOLearner``, so that a benchmark can alternate the two."""

    def __init__(self, game: str = "Breakout", n_envs: int = 8, n_steps: int = 128, n_minibatches: int = 4,
                 update_epochs: int = 4, lr: float = 2.5e-4, clip_coef: float = 0.1, seed: int = 0,
                 device: torch.device | str = "cpu"):
        import gymnasium as gym

        self.device = torch.device(device)
        self.n_steps, self.n_minibatches, self.update_epochs, self.clip_coef = n_steps, n_minibatches, update_epochs, \
            clip_coef
        # Same-step autoreset: the gymnasium 0.29 that cleanrl pins resets an ended env inside the step that ended it.
        self.envs = gym.vector.SyncVectorEnv([_atari_env(game) for _ in range(n_envs)],
                                             autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        torch.manual_seed(seed)
        n_actions = int(self.envs.single_action_space.n)

        def ortho(layer, gain=np.sqrt(2)):
            nn.init.orthogonal_(layer.weight, gain)
            nn.init.zeros_(layer.bias)
            return layer

        self.trunk = nn.Sequential(ortho(nn.Conv2d(4, 32, 8, stride=4)), nn.ReLU(),
                                   ortho(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),
                                   ortho(nn.Conv2d(64, 64, 3)), nn.ReLU(), nn.Flatten(),
                                   ortho(nn.Linear(64 * 7 * 7, 512)), nn.ReLU()).to(self.device)
        self.actor = ortho(nn.Linear(512, n_actions), 0.01).to(self.device)
        self.critic = ortho(nn.Linear(512, 1), 1.0).to(self.device)
        self.params = [*self.trunk.parameters(), *self.actor.parameters(), *self.critic.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=lr, eps=1e-5)
        obs, _ = self.envs.reset(seed=seed)
        self.obs = torch.as_tensor(obs, device=self.device)
        self.done = torch.zeros(n_envs, device=self.device)
        T, B = n_steps, n_envs
        self.b = {k: torch.zeros((T, B), device=self.device) for k in ("logp", "rew", "done", "val", "act")}
        self.b["obs"] = torch.zeros((T, B) + tuple(self.obs.shape[1:]), dtype=torch.uint8, device=self.device)
        self.global_step = 0

    def _forward(self, obs_B):
        h_BF = self.trunk(obs_B.float() / 255.0)
        return self.actor(h_BF), self.critic(h_BF).squeeze(-1)

    def collect(self) -> None:
        """One rollout of ``n_steps`` per env, as cleanrl's loop takes it."""
        b = self.b
        for t in range(self.n_steps):
            b["obs"][t], b["done"][t] = self.obs, self.done
            with torch.no_grad():
                logits_BA, value_B = self._forward(self.obs)
                dist = torch.distributions.Categorical(logits=logits_BA)
                action_B = dist.sample()
            b["act"][t], b["logp"][t], b["val"][t] = action_B, dist.log_prob(action_B), value_B
            obs, reward, term, trunc, _ = self.envs.step(action_B.cpu().numpy())
            b["rew"][t] = torch.as_tensor(reward, device=self.device, dtype=torch.float32)
            self.obs = torch.as_tensor(obs, device=self.device)
            self.done = torch.as_tensor(term | trunc, device=self.device, dtype=torch.float32)
            self.global_step += len(action_B)

    def learn(self, gamma: float = 0.99, lam: float = 0.95, ent_coef: float = 0.01, vf_coef: float = 0.5) -> float:
        """GAE over the last rollout, then the PPO epochs; returns the last minibatch's loss."""
        b = self.b
        with torch.no_grad():
            next_value = self._forward(self.obs)[1]
            adv = torch.zeros_like(b["rew"])
            last = torch.zeros_like(next_value)
            for t in reversed(range(self.n_steps)):
                nonterminal = 1.0 - (self.done if t == self.n_steps - 1 else b["done"][t + 1])
                nv = next_value if t == self.n_steps - 1 else b["val"][t + 1]
                delta = b["rew"][t] + gamma * nv * nonterminal - b["val"][t]
                last = delta + gamma * lam * nonterminal * last
                adv[t] = last
            ret = adv + b["val"]
        flat = {k: v.reshape((-1,) + tuple(v.shape[2:])) for k, v in b.items()}
        adv, ret = adv.reshape(-1), ret.reshape(-1)
        n = len(adv)
        mb = n // self.n_minibatches
        for _ in range(self.update_epochs):
            order = torch.randperm(n, device=self.device)
            for start in range(0, n, mb):
                i = order[start:start + mb]
                logits_BA, value_B = self._forward(flat["obs"][i])
                dist = torch.distributions.Categorical(logits=logits_BA)
                ratio = (dist.log_prob(flat["act"][i].long()) - flat["logp"][i]).exp()
                a = (adv[i] - adv[i].mean()) / (adv[i].std() + 1e-8)
                pg = torch.max(-a * ratio, -a * ratio.clamp(1 - self.clip_coef, 1 + self.clip_coef)).mean()
                v_clipped = flat["val"][i] + (value_B - flat["val"][i]).clamp(-self.clip_coef, self.clip_coef)
                v = 0.5 * torch.max((value_B - ret[i]) ** 2, (v_clipped - ret[i]) ** 2).mean()
                loss = pg - ent_coef * dist.entropy().mean() + vf_coef * v
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.params, 0.5)
                self.optimizer.step()
        return float(loss.item())

    def close(self) -> None:
        self.envs.close()
