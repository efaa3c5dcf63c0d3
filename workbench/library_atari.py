"""Atari as Stable-Baselines3 and cleanrl give it to their agents, for teachers trained there.

The workbench's own Atari env is ale-py's native vector env. An agent trained with SB3's ``make_atari_env`` or with
cleanrl's Atari scripts saw other frames at two moments, and a teacher imported from there should see its own:

- **The start of a game**: 1-30 raw no-op frames drawn from the env's own generator, then FIRE for one agent step
  (4 frames) and action 2 for one (SB3's ``NoopResetEnv`` and ``FireResetEnv``; cleanrl uses SB3's wrappers), where
  ale-py's vector env presses FIRE for one raw frame.
- **A lost life**: both libraries train and evaluate with ``EpisodicLifeEnv``: the learner's episode ends there, and
  its reset takes a no-op step, FIRE and action 2 before the agent acts again, with a fresh frame stack (SB3's
  ``VecFrameStack`` starts it from zeros; cleanrl's ``FrameStack`` from four copies of the first frame). The
  libraries count returns over whole games (their ``Monitor`` / ``RecordEpisodeStatistics`` sit under the life
  wrapper), and so does this env: its episode is the whole game, a lost life is not a ``done``, and every raw
  frame's reward is counted, also in the reset sequences.

Frames: the max of the last two raw RGB frames of each 4-frame step, then gray and resized 84x84 with
``cv2.INTER_AREA``: gray first for SB3 (``WarpFrame``), resized first for cleanrl (``ResizeObservation`` then
``GrayScaleObservation``). ``tests/test_library_atari.py`` checks it frame for frame against SB3's own pipeline
and cleanrl's composition. Observations are channels first, like every workbench image.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

CONVENTIONS = ("ale-py", "sb3", "cleanrl")


class LibraryAtari(gym.Env):
    """One Atari game (``*NoFrameskip-v4`` emulation: one raw frame a step, the minimal action set) with the wrappers
    of SB3's ``make_atari_env`` (``convention='sb3'``) or cleanrl's Atari scripts (``'cleanrl'``)."""

    metadata = {"render_modes": []}

    def __init__(self, game: str, convention: str, settings: dict):
        from ale_py.env import AtariEnv

        if convention not in CONVENTIONS[1:]:
            raise ValueError(f"convention must be one of {CONVENTIONS[1:]}, got {convention!r}")
        self.convention, self.s = convention, settings
        self.raw = AtariEnv(game=game, obs_type="rgb", frameskip=1, full_action_space=False,
                            repeat_action_probability=float(settings["repeat_action_probability"]),
                            max_num_frames_per_episode=int(settings["max_episode_frames"]))
        self.ale = self.raw.ale
        self.meanings = self.raw.get_action_meanings()
        self.fire = len(self.meanings) >= 3 and self.meanings[1] == "FIRE"
        k, size = int(settings["stack_num"]), int(settings["img_size"])
        self.observation_space = gym.spaces.Box(0, 255, (k, size, size), np.uint8)
        self.action_space = gym.spaces.Discrete(len(self.meanings))
        self._buffer = np.zeros((2, *self.raw.observation_space.shape), np.uint8)  # MaxAndSkipEnv's, kept across steps
        self.stack = np.zeros((k, size, size), np.uint8)
        self.lives, self.real_done, self._seed = 0, True, None

    # -- SB3's wrappers, innermost first ----------------------------------------------------------------------------
    def _noop_reset(self):
        self.raw.reset(seed=self._seed)
        self._seed = None  # only the first reset of an episode is seeded (a later one continues the generator)
        frame = None
        noop_max = int(self.s["noop_max"])
        for _ in range(int(self.raw.np_random.integers(1, noop_max + 1)) if noop_max > 0 else 0):
            frame, r, term, trunc, _ = self.raw.step(0)
            self._reward += r
            if term or trunc:
                frame, _ = self.raw.reset()
        return frame

    def _skip(self, action: int):
        """``MaxAndSkipEnv``: the action for ``frameskip`` raw frames, the max of the last two."""
        skip = int(self.s["frameskip"])
        term = trunc = False
        for i in range(skip):
            frame, r, term, trunc, _ = self.raw.step(action)
            self._reward += r
            if i == skip - 2:
                self._buffer[0] = frame
            if i == skip - 1:
                self._buffer[1] = frame
            if term or trunc:
                break
        return self._buffer.max(axis=0), term, trunc

    def _life_step(self, action: int):
        """``EpisodicLifeEnv.step``: a lost life (with lives left) ends the learner's episode."""
        frame, term, trunc = self._skip(action)
        self.real_done = term or trunc
        lives = self.ale.lives()
        life_lost = 0 < lives < self.lives
        self.lives = lives
        return frame, term or life_lost, trunc

    def _life_reset(self):
        """``EpisodicLifeEnv.reset``: a new game after a real end, else one no-op step."""
        if self.real_done:
            frame = self._noop_reset()
        else:
            frame, term, trunc = self._skip(0)
            if term or trunc:
                frame = self._noop_reset()
        self.lives = self.ale.lives()
        return frame

    def _learner_reset(self):
        """``FireResetEnv.reset`` over the life wrapper: reset, FIRE for a step, action 2 for a step."""
        frame = self._life_reset()
        if self.fire:
            frame, term, trunc = self._life_step(1)
            if term or trunc:
                self._life_reset()
            frame, term, trunc = self._life_step(2)
            if term or trunc:
                self._life_reset()
        return frame

    def _warp(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        size = int(self.s["img_size"])
        if self.convention == "sb3":  # WarpFrame: gray, then resize
            return cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (size, size), interpolation=cv2.INTER_AREA)
        # cleanrl: ResizeObservation, then GrayScaleObservation
        return cv2.cvtColor(cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)

    def _fresh_stack(self, frame: np.ndarray) -> np.ndarray:
        g = self._warp(frame)
        if self.convention == "sb3":  # VecFrameStack: zeros, then the first frame last
            self.stack[:] = 0
            self.stack[-1] = g
        else:  # gym's FrameStack: the first frame k times
            self.stack[:] = g
        return self.stack.copy()

    # -- the workbench's episode: a whole game ---------------------------------------------------------------------
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._seed, self._reward, self.real_done = seed, 0.0, True
        obs = self._fresh_stack(self._learner_reset())
        return obs, {"lives": self.lives}

    def step(self, action):
        self._reward = 0.0
        frame, term, trunc = self._life_step(int(action))
        if self.real_done:
            self.stack[:-1] = self.stack[1:]
            self.stack[-1] = self._warp(frame)
            return self.stack.copy(), self._reward, bool(term and not trunc), bool(trunc), {"lives": self.lives}
        if term:  # a lost life: the learner's reset sequence, a fresh stack, and play goes on in the same game
            obs = self._fresh_stack(self._learner_reset())
            return obs, self._reward, False, False, {"lives": self.lives, "life_lost": True}
        self.stack[:-1] = self.stack[1:]
        self.stack[-1] = self._warp(frame)
        return self.stack.copy(), self._reward, False, False, {"lives": self.lives}

    def close(self):
        self.raw.close()
