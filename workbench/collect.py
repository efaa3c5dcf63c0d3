"""The collector: one vector-env step at a time into a replay memory, with the episodes that end.

Who picks the actions is the caller's ``act(obs) -> actions`` (a DQN's epsilon-greedy, a teacher/student mix
in distillation, random play in the benchmark); ``extras(obs)`` may store per-state outputs beside the state
(a teacher's logits), computed once per collected state.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .agents.common import EpisodeTracker
from .envs import EnvSpec, final_obs, make_env
from .hardware import env_threads
from .memory import ReplayMemory


def restarted(info: dict, terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray | None:
    """Where an env began a fresh frame stack without ending its episode (a lost life under SB3's or cleanrl's Atari
    wrappers, which say so in ``info["life_lost"]``); None where none did."""
    lost = info.get("life_lost")
    return None if lost is None else np.asarray(lost, dtype=bool) & ~(terminated | truncated)


class Collector:
    def __init__(self, envs, spec: EnvSpec, memory: ReplayMemory, obs: np.ndarray, clip_rewards: bool | None = None,
                 defer: bool = True):
        """``defer``: let the memory write steps in runs (``ReplayMemory.add``); False writes each as it comes."""
        self.envs, self.spec, self.memory, self.obs, self.defer = envs, spec, memory, obs, defer
        self.clip = bool(spec.settings.get("reward_clipping")) if clip_rewards is None else clip_rewards
        self.tracker = EpisodeTracker(envs.num_envs)
        self.steps = 0

    def step(self, act: Callable[[np.ndarray], np.ndarray],
             extras: Callable[[np.ndarray], dict] | None = None) -> list[tuple[float, int]]:
        """Act once in every env, store the transitions; returns (return, length) of episodes that ended.

        A step costs the env's step and a handful of calls (MinAtar's steps take microseconds): its writes wait in
        the memory (``defer``) until a run of them is written at once, or something reads the memory."""
        obs = self.obs
        action = np.asarray(act(obs))
        stored = dict(extras(obs)) if extras else None  # a copy: the caller may reuse its dict per call
        next_obs, reward, term, trunc, info = self.envs.step(action)
        # Learners see clipped rewards where the env family asks for it; returns stay the real score. Where an episode
        # ended, next_obs holds the next one's first observation and info["final_obs"] the terminal one.
        self.memory.add(obs, action, np.sign(reward) if self.clip else reward, term, trunc, next_obs, stored,
                        restart=restarted(info, term, trunc), defer=self.defer, final_obs=info.get("final_obs"))
        self.obs = next_obs
        self.steps += self.envs.num_envs
        return self.tracker.update(reward, term, truncated=trunc)

    def close(self) -> None:
        self.envs.close()


class OverlapCollector:
    """Atari collection with the envs' stepping overlapped with the network work. The envs are two halves (two
    ale-py vector envs, each on half the env threads): while one half steps in its C++ threads, ``act`` labels the
    other half's states; and when ``step`` returns, the first half of the next step is already on its way, so the
    learner's updates after it run while the emulators work (ale-py's ``send``/``recv``). The halves alternate in a
    fixed order and each env is seeded as in one vector env, so the same seed gives the same numbers; ``act`` sees
    half a batch at a time, and the first half's next actions are chosen before the learner's updates of this step.
    Same interface as :class:`Collector`."""

    def __init__(self, halves: tuple, spec: EnvSpec, memory: ReplayMemory, obs: tuple, clip_rewards: bool | None = None):
        self.halves, self.spec, self.memory, self.obs = halves, spec, memory, list(obs)
        self.clip = bool(spec.settings.get("reward_clipping")) if clip_rewards is None else clip_rewards
        n0 = halves[0].num_envs
        self.parts = (slice(0, n0), slice(n0, n0 + halves[1].num_envs))
        self.tracker = EpisodeTracker(n0 + halves[1].num_envs)
        self.in_flight = None  # the first half's (action, stored outputs), sent and stepping
        self.steps = 0

    def _send(self, i: int, act, extras):
        action = np.asarray(act(self.obs[i]), dtype=np.int64)
        stored = dict(extras(self.obs[i])) if extras else None  # a copy: the caller may reuse its dict per call
        self.halves[i].send(action)
        return action, stored

    def _recv(self, i: int, action, stored) -> list[tuple[float, int]]:
        next_obs, reward, term, trunc, info = self.halves[i].recv()
        done = term | trunc
        self.memory.add(self.obs[i], action, np.sign(reward) if self.clip else reward, term, trunc,
                        final_obs(next_obs, done, info), stored, streams=self.parts[i])
        self.obs[i] = next_obs
        return self.tracker.update(reward, done, self.parts[i])

    def step(self, act: Callable[[np.ndarray], np.ndarray],
             extras: Callable[[np.ndarray], dict] | None = None) -> list[tuple[float, int]]:
        """Every env steps once (the first half's step was sent by the previous call); returns the ended episodes."""
        if self.in_flight is None:
            self.in_flight = self._send(0, act, extras)
        second = self._send(1, act, extras)            # labelled while the first half steps
        ended = self._recv(0, *self.in_flight)
        self.in_flight = self._send(0, act, extras)    # labelled while the second half steps
        ended += self._recv(1, *second)
        self.steps += sum(h.num_envs for h in self.halves)
        return ended

    def close(self) -> None:
        if self.in_flight is not None:
            self.halves[0].recv()
            self.in_flight = None
        for h in self.halves:
            h.close()


def make_collector(spec: EnvSpec, n_envs: int, seed: int, memory: ReplayMemory, overlap: bool = False,
                   reset_seed: int | None = None, clip_rewards: bool | None = None):
    """The collector for ``n_envs`` envs of ``spec`` seeded ``seed`` (reset with ``reset_seed`` where a resumed run
    restarts them): :class:`OverlapCollector` for Atari with ``overlap`` (two halves: envs ``seed...`` and
    ``seed + n_envs // 2...``, as one vector env of ``n_envs`` seeds them), else :class:`Collector`."""
    reset_seed = seed if reset_seed is None else reset_seed
    # The overlap needs ale-py's send/recv: not under SB3's or cleanrl's wrappers (gymnasium vector envs).
    if not (overlap and spec.family == "ale" and n_envs >= 2 and "conventions" not in spec.settings):
        envs, _ = make_env(spec.env_id, n_envs, seed, **spec.settings)
        obs, _ = envs.reset(seed=reset_seed)
        return Collector(envs, spec, memory, obs, clip_rewards)
    sizes = (n_envs // 2, n_envs - n_envs // 2)
    threads = max(1, env_threads(n_envs) // 2)
    halves, obs = [], []
    for k, size in enumerate(sizes):
        offset = k * sizes[0]
        envs, _ = make_env(spec.env_id, size, seed + offset, num_threads=threads, **spec.settings)
        halves.append(envs)
        obs.append(envs.reset(seed=reset_seed + offset)[0])
    return OverlapCollector(tuple(halves), spec, memory, tuple(obs), clip_rewards)
