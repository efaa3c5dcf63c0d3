"""The collector: one vector-env step at a time into a replay memory, with the episodes that end.

Who picks the actions is the caller's ``act(obs) -> actions`` (a DQN's epsilon-greedy, a teacher/student mix
in distillation, random play in the benchmark); ``extras(obs)`` may store per-state outputs beside the state
(a teacher's logits), computed once per collected state.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .agents.common import EpisodeTracker
from .envs import EnvSpec, final_obs
from .memory import ReplayMemory


class Collector:
    def __init__(self, envs, spec: EnvSpec, memory: ReplayMemory, obs: np.ndarray, clip_rewards: bool | None = None):
        self.envs, self.spec, self.memory, self.obs = envs, spec, memory, obs
        self.clip = bool(spec.settings.get("reward_clipping")) if clip_rewards is None else clip_rewards
        self.tracker = EpisodeTracker(envs.num_envs)
        self.steps = 0

    def step(self, act: Callable[[np.ndarray], np.ndarray],
             extras: Callable[[np.ndarray], dict] | None = None) -> list[tuple[float, int]]:
        """Act once in every env, store the transitions; returns (return, length) of episodes that ended."""
        obs = self.obs
        action = act(obs)
        stored = extras(obs) if extras else None
        next_obs, reward, term, trunc, info = self.envs.step(action)
        done = term | trunc
        # Learners see clipped rewards where the env family asks for it; returns stay the real score.
        self.memory.add(obs, action, np.sign(reward) if self.clip else reward, term, trunc,
                        final_obs(next_obs, done, info), stored)
        self.obs = next_obs
        self.steps += self.envs.num_envs
        return self.tracker.update(reward, done)
