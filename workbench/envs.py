"""Environments for three families behind one call, :func:`make_env`, and one observation convention.

Observation convention (every family, vector or single env):
- images are ``uint8`` and channels first: ALE ``(4, 84, 84)`` (4 stacked 84x84 gray frames, 0..255),
  MinAtar ``(C, 10, 10)`` (one 0/1 plane per object kind);
- vectors (classic control) are ``float32`` ``(D,)``.

Rewards are the game's own (never clipped by the env), so every logged return is a real score. Where the
learner should clip rewards (Nature DQN on Atari), ``EnvSpec.settings["reward_clipping"]`` says so and the
learner does it. Vector envs reset in gymnasium's SAME_STEP mode: the observation after a done is the next
episode's first; the terminal one is in ``info["final_obs"]`` (see :func:`final_obs`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from .hardware import env_processes, env_threads
from .vector import ProcessVectorEnv, worker_count

CLASSIC = ("CartPole-v1", "Acrobot-v1")
MINATAR_GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
# MinAtar's own action letters (minatar/environment.py): no-op, left, up, right, down, fire.
MINATAR_ACTION_NAMES = ["NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE"]
CLASSIC_ACTION_NAMES = {"CartPole-v1": ["LEFT", "RIGHT"], "Acrobot-v1": ["TORQUE -1", "TORQUE 0", "TORQUE +1"]}

# Defaults per family. Every key here changes behaviour, so each lands in EnvSpec.settings and in every run.
ALE_DEFAULTS = dict(
    frameskip=4,                      # Nature DQN
    repeat_action_probability=0.0,    # Rusu et al. and Nature DQN had no sticky actions; v5's 0.25 is opt-in
    noop_max=30,                      # Nature DQN: up to 30 no-ops at the start of an episode
    stack_num=4,
    img_size=84,
    maxpool=True,                     # max over the last two raw frames (Atari sprites flicker)
    use_fire_reset=True,
    episodic_life=False,
    reward_clipping=True,             # applied by the learner to its targets; logged returns stay raw
    max_episode_frames=108_000,       # 30 minutes of play at 60 Hz, the usual cap
)
MINATAR_DEFAULTS = dict(
    sticky_action_prob=0.1,           # the MinAtar paper's default
    difficulty_ramping=True,
    max_episode_steps=10_000,         # MinAtar has no cap; a good Breakout agent could play forever
    reward_clipping=False,
)
CLASSIC_DEFAULTS = dict(reward_clipping=False)
# ALE only, absent unless chosen: whose wrappers make the frames. "ale-py" (the default) is ale-py's native vector env
# as set above; "sb3" and "cleanrl" are the libraries' own Atari wrappers (workbench/library_atari.py), for teachers
# trained there. Absent means "ale-py", so the settings recorded before it existed read the same.
CONVENTIONS = ("ale-py", "sb3", "cleanrl")
# What the libraries' wrappers fix, and so cannot be changed under their conventions.
_LIBRARY_FIXED = dict(maxpool=True, use_fire_reset=True, episodic_life=False)


@dataclass(frozen=True)
class EnvSpec:
    """What a learner and a run need to know about an env: shapes, actions and every behaviour setting."""

    env_id: str
    family: str
    """'ale', 'minatar' or 'classic'."""
    obs_shape: tuple[int, ...]
    obs_dtype: str
    n_actions: int
    action_meanings: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["obs_shape"] = list(self.obs_shape)
        d["action_meanings"] = list(self.action_meanings)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EnvSpec":
        return cls(**{**d, "obs_shape": tuple(d["obs_shape"]), "action_meanings": tuple(d["action_meanings"])})


class EnvError(ValueError):
    """An env id that the workbench cannot make, with the way to fix it in the message."""


def _supported() -> str:
    return (
        "Supported env ids: ALE/<Game>-v5 (Atari through ale-py, e.g. ALE/Pong-v5), "
        f"MinAtar/<Game>-v1 with Game in {list(MINATAR_GAMES)}, and classic control {list(CLASSIC)}."
    )


def _rom_id(name: str) -> str:
    # SpaceInvaders -> space_invaders, ale-py's ROM naming
    return "".join("_" + ch.lower() if ch.isupper() and i else ch.lower() for i, ch in enumerate(name))


def _ale_roms() -> set[str]:
    if importlib.util.find_spec("ale_py") is None:
        return set()
    import ale_py

    return set(ale_py.roms.get_all_rom_ids())


_ALE_V5 = re.compile(r"ALE/([A-Za-z0-9]+)-v5")
# gym's older Atari ids (Pong-v0, PongNoFrameskip-v4, Pong-ramDeterministic-v4, ALE/Pong-ram-v5, ALE/Pong-v4...)
_ATARI_OTHER = re.compile(r"(?:ALE/)?([A-Z][A-Za-z0-9]*?)(-ram)?(NoFrameskip|Deterministic)?-v(\d+)")


def _refuse_other_atari_ids(env_id: str) -> None:
    """An EnvError for an Atari id that is not ALE/<Game>-v5: other versions differ in frame skip, sticky actions
    and action set, and the workbench would build and record a v5-style env under the wrong name."""
    m = _ATARI_OTHER.fullmatch(env_id)
    if env_id.startswith("ALE/"):
        game = m.group(1) if m else env_id.removeprefix("ALE/").split("-")[0]
    elif m and (m.group(3) or _rom_id(m.group(1)) in _ale_roms()):
        game = m.group(1)
    else:
        return
    roms = _ale_roms()
    if roms and _rom_id(game) not in roms:
        fix = f"Use ALE/<Game>-v5 with a game whose ROM ships with ale-py (there is no {_rom_id(game)!r})."
    else:
        fix = f"Use 'ALE/{game}-v5' instead of {env_id!r}."
    ale_settings = ", ".join(f"{k}={v!r}" for k, v in ALE_DEFAULTS.items())
    raise EnvError(
        f"{env_id!r} is not an env id the workbench runs: it runs Atari games as ALE/<Game>-v5 only, through "
        f"ale-py's vector env with the settings it records in every run ({ale_settings}); change those with "
        f"settings, e.g. make_env('ALE/Pong-v5', repeat_action_probability=0.25). {fix} {_supported()}"
    )


def family_of(env_id: str) -> str:
    """'ale', 'minatar' or 'classic'; an EnvError that lists what is supported otherwise."""
    if _ALE_V5.fullmatch(env_id):
        family, module, pip = "ale", "ale_py", "ale-py"
    elif env_id.startswith("MinAtar/"):
        family, module, pip = "minatar", "minatar", "minatar"
        _minatar_game(env_id)
    elif env_id in CLASSIC:
        return "classic"
    else:
        _refuse_other_atari_ids(env_id)
        raise EnvError(f"unknown env id {env_id!r}. {_supported()}")
    if importlib.util.find_spec(module) is None:
        raise EnvError(
            f"{env_id!r} needs the {family} family, but the Python package {module!r} is not installed. "
            f"Install it with `pip install {pip}` (or `make venv`, which installs every family). {_supported()}"
        )
    return family


def _settings(family: str, overrides: dict) -> dict:
    defaults = {"ale": ALE_DEFAULTS, "minatar": MINATAR_DEFAULTS, "classic": CLASSIC_DEFAULTS}[family]
    known = set(defaults) | ({"conventions"} if family == "ale" else set())
    unknown = set(overrides) - known
    if unknown:
        raise EnvError(f"unknown setting(s) {sorted(unknown)} for a {family} env; known: {sorted(known)}")
    s = {**defaults, **overrides}
    conventions = s.pop("conventions", "ale-py")
    if conventions not in CONVENTIONS:
        raise EnvError(f"conventions={conventions!r} is not one of {list(CONVENTIONS)}: 'ale-py' is ale-py's vector "
                       "env, 'sb3' and 'cleanrl' the Atari wrappers of Stable-Baselines3 and cleanrl")
    if conventions != "ale-py":
        fixed = {k: s[k] for k, v in _LIBRARY_FIXED.items() if s[k] != v}
        if fixed:
            raise EnvError(f"{fixed} cannot be set under conventions={conventions!r}: {conventions}'s wrappers "
                           f"always max-pool, press FIRE to start and count whole games ({_LIBRARY_FIXED}); "
                           "leave those settings out")
        s["conventions"] = conventions
    return s


def _ale_game(env_id: str) -> str:
    import ale_py

    rom = _rom_id(env_id.removeprefix("ALE/").split("-v")[0])
    if rom not in ale_py.roms.get_all_rom_ids():
        raise EnvError(f"no Atari ROM named {rom!r} (from {env_id!r}) ships with ale-py. {_supported()}")
    return rom


def _minatar_game(env_id: str) -> str:
    name, _, version = env_id.removeprefix("MinAtar/").partition("-v")
    if name in MINATAR_GAMES and version != "1":
        raise EnvError(f"{env_id!r}: the workbench runs MinAtar games as MinAtar/<Game>-v1 (the minimal action set); "
                       f"use 'MinAtar/{name}-v1'. {_supported()}")
    if name not in MINATAR_GAMES:
        raise EnvError(f"unknown MinAtar env {env_id!r}. {_supported()}")
    return name


def _register_minatar() -> None:
    if "MinAtar/Breakout-v1" not in gym.registry:
        from minatar.gym import register_envs

        register_envs()


class MinAtarObs(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """(10, 10, C) bool -> (C, 10, 10) uint8, the workbench's channels-first image convention.

    A seeded reset also clears MinAtar's sticky-action memory, so that the seed alone fixes the episode.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        h, w, c = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 1, (c, h, w), np.uint8)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            # MinAtar's BaseEnv seeds its game but never gymnasium's own generator; set it so seeding is checkable.
            self.unwrapped._np_random, _ = gym.utils.seeding.np_random(seed)
            # MinAtar's Environment keeps last_action across reset(), and a sticky step repeats it: without this a
            # second reset(seed=s) in one process replays the previous episode's last action, not the first
            # episode's. 0 is the value Environment.__init__ gives it, so a fresh env's first episode is unchanged.
            # Unseeded resets (autoreset between episodes) keep MinAtar's own behaviour.
            self.unwrapped.game.last_action = 0
        return super().reset(seed=seed, options=options)

    def observation(self, obs):
        return np.ascontiguousarray(np.transpose(obs, (2, 0, 1)), dtype=np.uint8)


def _single_minatar(env_id: str, s: dict, render_mode: str | None = None) -> gym.Env:
    _register_minatar()
    env = gym.make(
        env_id, sticky_action_prob=s["sticky_action_prob"], difficulty_ramping=s["difficulty_ramping"],
        render_mode=render_mode, max_episode_steps=s["max_episode_steps"],
    )
    return MinAtarObs(env)


def _single_classic(env_id: str, s: dict, render_mode: str | None = None) -> gym.Env:
    return gym.make(env_id, render_mode=render_mode)


def make_single_env(env_id: str, render_mode: str | None = None, **settings) -> tuple[gym.Env, EnvSpec]:
    """One env (not vectorised), same observation convention; MinAtar and classic control only here.

    ALE's single-env path (frame-exact with the native vector env, for emulator snapshots) lives with the
    trace code; for training and evaluation always use :func:`make_env`.
    """
    family = family_of(env_id)
    if family == "ale":
        raise EnvError("make_single_env does not build ALE envs; use make_env(env_id, n_envs=1)")
    s = _settings(family, settings)
    if family == "minatar":
        _minatar_game(env_id)
        env = _single_minatar(env_id, s, render_mode)
    else:
        env = _single_classic(env_id, s, render_mode)
    return env, _spec_of(env_id, family, env.observation_space, env, s)


def _spec_of(env_id, family, obs_space, env_or_vec, s) -> EnvSpec:
    if family == "minatar":
        game = env_or_vec.unwrapped if isinstance(env_or_vec, gym.Env) else env_or_vec.envs[0].unwrapped
        meanings = tuple(MINATAR_ACTION_NAMES[a] for a in game.action_set)
    else:
        meanings = tuple(CLASSIC_ACTION_NAMES[env_id])
    return EnvSpec(env_id, family, tuple(obs_space.shape), obs_space.dtype.name, len(meanings), meanings, s)


def make_env(env_id: str, n_envs: int = 1, seed: int = 0, num_threads: int | None = None,
             **settings) -> tuple[gym.vector.VectorEnv, EnvSpec]:
    """A vector env of ``n_envs`` copies (SAME_STEP autoreset), reset with ``seed``, and its :class:`EnvSpec`.

    ALE uses ale-py's native ``AtariVectorEnv`` (C++ threads, one per core available: ``hardware.env_threads``;
    each env's frames do not depend on how many threads step them; Nature preprocessing inside), or with
    ``conventions='sb3'``/``'cleanrl'`` those libraries' wrappers (:mod:`workbench.library_atari`); MinAtar and
    classic control use gymnasium's ``SyncVectorEnv``, or where asked (``num_threads`` or WORKBENCH_ENV_THREADS above
    1: ``hardware.env_processes``) and there are enough envs for it to pay (``vector.MIN_ENVS_PER_WORKER`` per
    worker), worker processes that step a share each (:class:`workbench.vector.ProcessVectorEnv`: the same envs and
    numbers).
    ``settings`` override the family defaults (``ALE_DEFAULTS``, ``MINATAR_DEFAULTS``); unknown keys fail.
    ``num_threads``: the Atari vector env's threads (default ``hardware.env_threads``), the other families' most
    worker processes (default ``hardware.env_processes``; 1 steps them in this process).
    """
    family = family_of(env_id)
    if n_envs < 1:
        raise ValueError(f"n_envs must be at least 1, got {n_envs}")
    s = _settings(family, settings)
    same_step = gym.vector.AutoresetMode.SAME_STEP
    if family == "ale" and s.get("conventions", "ale-py") != "ale-py":
        from .library_atari import LibraryAtari

        game = _ale_game(env_id)
        venv = gym.vector.SyncVectorEnv([lambda: LibraryAtari(game, s["conventions"], s) for _ in range(n_envs)],
                                        autoreset_mode=same_step)
        meanings = tuple(_ale_action_meanings(game))
        spec = EnvSpec(env_id, family, tuple(venv.single_observation_space.shape), "uint8", len(meanings),
                       meanings, s)
    elif family == "ale":
        from ale_py.vector_env import AtariVectorEnv

        game = _ale_game(env_id)
        venv = AtariVectorEnv(
            game, n_envs, num_threads=num_threads or env_threads(n_envs), autoreset_mode="SameStep",
            frameskip=s["frameskip"], repeat_action_probability=s["repeat_action_probability"],
            noop_max=s["noop_max"], stack_num=s["stack_num"], img_height=s["img_size"], img_width=s["img_size"],
            maxpool=s["maxpool"], use_fire_reset=s["use_fire_reset"], episodic_life=s["episodic_life"],
            reward_clipping=False, max_num_frames_per_episode=s["max_episode_frames"],
        )
        meanings = tuple(_ale_action_meanings(game))
        spec = EnvSpec(env_id, family, tuple(venv.single_observation_space.shape), "uint8", len(meanings),
                       meanings, s)
    else:
        maker = _single_minatar if family == "minatar" else _single_classic
        workers = worker_count(n_envs, num_threads or env_processes())
        if family == "minatar":
            _minatar_game(env_id)
        venv = gym.vector.SyncVectorEnv([lambda: maker(env_id, s) for _ in range(1 if workers > 1 else n_envs)],
                                        autoreset_mode=same_step)
        spec = _spec_of(env_id, family, venv.single_observation_space, venv, s)
        if workers > 1:  # the one env above gave the spec
            venv.close()
            venv = ProcessVectorEnv(env_id, n_envs, seed, workers, settings)
    venv.reset(seed=seed)
    return venv, spec


def _ale_action_meanings(game: str) -> list[str]:
    import ale_py

    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.loadROM(ale_py.roms.get_rom_path(game))
    return [a.name for a in ale.getMinimalActionSet()]


def final_obs(obs: np.ndarray, done: np.ndarray, info: dict) -> np.ndarray:
    """The observation each env ended its step on: the terminal one where an episode ended (SAME_STEP)."""
    if not done.any():
        return obs
    out = obs.copy()
    finals = info["final_obs"]
    for i in np.flatnonzero(done):
        out[i] = finals[i]
    return out


def random_steps_per_second(env_id: str, n_envs: int, steps: int, seed: int = 0) -> float:
    """Raw env speed with random actions: the baseline that collectors are measured against."""
    import time

    venv, spec = make_env(env_id, n_envs, seed)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, spec.n_actions, size=(steps, n_envs))
    t0 = time.perf_counter()
    for t in range(steps):
        venv.step(actions[t])
    dt = time.perf_counter() - t0
    venv.close()
    return steps * n_envs / dt
