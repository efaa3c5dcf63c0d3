"""Episodes -> returns, on fixed seeds; and how closely two policies agree on the same states.

Episode ``i`` of an evaluation always starts from env seed ``seed + i``, so a teacher and a student evaluated
with the same ``seed`` face the same starting states (and, where the env is deterministic given its seed
and the actions, the same game until their actions differ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .envs import make_env


STALL_STEPS = 1_000
"""Steps on unchanging frames after which a greedy evaluation episode counts as stuck (4,000 Atari frames, over a
minute of play; no shipped teacher ever comes near it)."""


@dataclass
class EvalResult:
    returns: np.ndarray
    lengths: np.ndarray | None = None
    """Per-episode lengths (None where the returns were read from a card, which keeps only their mean)."""
    stalled: int = 0
    """Episodes ended early because a greedy policy sat on unchanging frames (see ``evaluate``)."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    def summary(self, prefix: str = "return") -> dict:
        out = {f"{prefix}_mean": self.mean, f"{prefix}_std": self.std, f"{prefix}_n": int(len(self.returns))}
        if self.lengths is not None:
            out["episode_length_mean"] = float(np.mean(self.lengths))
            out["stalled_episodes"] = self.stalled
        return out


PCT_KINDS = {
    "raw": "100 x student / teacher return (Rusu et al.; for teachers with a positive return)",
    "random-normalised": "100 x (student - random) / (teacher - random), random = a uniformly random policy's return "
                         "on the same seeds (for teachers whose return is not positive)",
}


def pct_of_teacher(student: float, teacher: float, random: float | None = None) -> tuple[float | None, str]:
    """A student's return as % of its teacher's on the same seeds, and which definition gave it (``PCT_KINDS``).

    Where the teacher's return is positive this is Rusu's ratio, 100 s / t: it ranks students by return, reads 0
    for a student that scores nothing and may go negative (a Pong student losing 21-0). Where it is not (Acrobot's
    returns are always negative) s / t ranks a worse student higher, so the figure is normalised by a uniformly
    random policy's return r on the same seeds instead: 100 (s - r) / (t - r), 0 for random play, 100 for the
    teacher's. It is None where the teacher plays no better than random, or r is not given."""
    if teacher > 0:
        return 100.0 * student / teacher, "raw"
    if random is None or teacher <= random:
        return None, "random-normalised"
    return 100.0 * (student - random) / (teacher - random), "random-normalised"


def threshold_return(fraction: float, teacher: float, random: float | None = None) -> float:
    """The return at which a student keeps ``fraction`` of its teacher, by ``pct_of_teacher``'s definition: the
    inverse of it, so that a target "95% of the teacher" never lies above a teacher whose return is negative."""
    if teacher > 0:
        return fraction * teacher
    if random is None or teacher <= random:
        raise ValueError(f"the teacher's return {teacher} is not above a random policy's ({random}): no share of it "
                         "can be a target")
    return random + fraction * (teacher - random)


def check_fits(policy, spec, what: str = "the policy") -> None:
    """Refuse to run ``policy`` on an env whose observation shape or action count differs from its own: a net for
    another game would either crash inside torch or, worse, play with the wrong action meanings and report a score."""
    net = getattr(policy, "spec", None)
    if net is None:
        return
    if tuple(net.obs_shape) != tuple(spec.obs_shape) or int(net.n_actions) != int(spec.n_actions):
        raise ValueError(
            f"{what} is a network for observations {tuple(net.obs_shape)} with {net.n_actions} actions, but "
            f"{spec.env_id} gives observations {tuple(spec.obs_shape)} with {spec.n_actions} actions; run it on the "
            "game it was trained on (leave out --env), or give the run folder of a policy for this game")


class RandomPolicy:
    """Uniformly random actions from its own seeded generator: the floor of a random-normalised % of teacher."""

    def __init__(self, n_actions: int, seed: int):
        self.n_actions, self.rng = n_actions, np.random.default_rng(seed)

    def eval(self) -> "RandomPolicy":
        return self

    def act(self, obs, greedy: bool = True, generator=None) -> torch.Tensor:
        return torch.as_tensor(self.rng.integers(0, self.n_actions, len(obs)))


def random_returns(env_id: str, n_actions: int, episodes: int, seed: int, settings: dict | None = None) -> "EvalResult":
    """A uniformly random policy's returns on episodes ``seed .. seed + episodes - 1``."""
    return evaluate(RandomPolicy(n_actions, seed), env_id, episodes, seed, settings, stall_steps=None)


def geometric_mean_pct(pcts) -> float | None:
    """Geometric mean of "% of teacher" figures over games (Rusu's summary). Each is floored at 1% so that one
    game at zero does not zero the mean; missing values (None, NaN) are left out."""
    vals = [max(float(p), 1.0) for p in pcts if p is not None and not math.isnan(float(p))]
    return float(math.exp(np.mean(np.log(vals)))) if vals else None


@torch.no_grad()
def evaluate(
    policy, env_id: str, episodes: int = 30, seed: int = 10_000, settings: dict | None = None,
    greedy: bool = True, epsilon: float = 0.0, max_parallel: int = 16, stall_steps: int | None = STALL_STEPS,
    fire_after_life_loss: bool = False,
) -> EvalResult:
    """Play ``episodes`` episodes; episode i starts from env seed ``seed + i``.

    A greedy policy (no epsilon) that sees the same observation ``stall_steps`` steps in a row is stuck: the
    same frames give the same action, and a game that waits for input (Atari Breakout after a lost life, until
    FIRE is pressed) never moves again. Such an episode ends there with the return it had, instead of playing on
    to the env's cap (108k frames on Atari, minutes of CPU for a student that never learnt to press FIRE); the
    result counts them in ``stalled``. ``stall_steps=None`` plays every episode to its end.

    ``fire_after_life_loss`` presses FIRE for the policy on the step after each lost life (Atari games with lives
    and a FIRE action), as wrappers that end an episode at each lost life and fire on reset do. It measures how a
    policy plays once the ball is in, apart from whether it relaunches it; it is not the cards' protocol.
    """
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a whole number of at least 1, got {episodes!r}")
    policy.eval()
    returns, lengths, stalled = [], [], 0
    watch = stall_steps is not None and greedy and epsilon == 0
    fire = None
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    start = 0
    while start < episodes:
        n = min(max_parallel, episodes - start)
        venv, spec = make_env(env_id, n, seed=seed + start, **(settings or {}))
        # Vector envs seed copy k with seed + k, so episode start+k starts from env seed seed + start + k.
        try:
            check_fits(policy, spec)
        except ValueError:
            venv.close()
            raise
        obs, info = venv.reset(seed=seed + start)
        if fire_after_life_loss:
            if "FIRE" not in spec.action_meanings or "lives" not in info:
                venv.close()
                raise ValueError(f"fire_after_life_loss needs an Atari game with lives and a FIRE action; {env_id} "
                                 f"has actions {list(spec.action_meanings)}{'' if 'lives' in info else ' and no lives'}")
            fire, lives = spec.action_meanings.index("FIRE"), np.asarray(info["lives"])
            lost = np.zeros(n, dtype=bool)
        ret, length = np.zeros(n), np.zeros(n, dtype=np.int64)
        running = np.ones(n, dtype=bool)
        same_for = np.zeros(n, dtype=np.int64)
        while running.any():
            action = policy.act(obs, greedy=greedy, generator=gen).numpy()
            if epsilon > 0:
                explore = rng.random(n) < epsilon
                action = np.where(explore, rng.integers(0, spec.n_actions, n), action)
            if fire is not None:
                action = np.where(lost, fire, action)
            before = np.array(obs, copy=True) if watch else None
            obs, reward, term, trunc, info = venv.step(action)
            if fire is not None:
                now = np.asarray(info["lives"])
                lost, lives = now < lives, now
            ret += reward * running
            length += running
            running &= ~(term | trunc)
            if watch:
                same = (np.asarray(obs) == before).reshape(n, -1).all(1)
                same_for = np.where(same, same_for + 1, 0)
                stuck = running & (same_for >= stall_steps)
                stalled += int(stuck.sum())
                running &= ~stuck
        venv.close()
        returns.extend(ret.tolist())
        lengths.extend(length.tolist())
        start += n
    return EvalResult(np.asarray(returns), np.asarray(lengths), stalled)


def evaluate_teacher(teacher, card: dict, env_id: str, episodes: int, seed: int, settings: dict) -> EvalResult:
    """The teacher's greedy returns on episodes ``seed .. seed + episodes - 1``. Where its card already holds exactly
    that evaluation (same env, seeds, count and settings) the card's returns are used: greedy play on a seeded env
    is deterministic (tests/test_teachers.py replays each shipped card), and a sweep of 36 students would otherwise
    replay the same 30 teacher episodes 36 times. Otherwise the episodes are played now."""
    if (card.get("env_id") == env_id and card.get("eval_seed") == seed and card.get("return_n") == episodes
            and len(card.get("returns", [])) == episodes and card.get("env_settings") == settings):
        return EvalResult(np.asarray(card["returns"], dtype=float))
    return evaluate(teacher, env_id, episodes, seed, settings)


@torch.no_grad()
def agreement(student, teacher, obs, tau: float = 1.0, teacher_out=None) -> dict:
    """On the same states: share of argmax actions that agree, and mean KL(teacher || student).

    The teacher's distribution is softmax(teacher_logits / tau) (for a DQN teacher pass Rusu's tau).
    ``teacher_out``: the teacher's outputs on ``obs`` where they are at hand (a held-out set keeps them).
    """
    s_BA = student.logits(obs)
    t_BA = teacher.logits(obs) if teacher_out is None else teacher_out
    if s_BA.shape[-1] != t_BA.shape[-1]:
        raise ValueError(f"student has {s_BA.shape[-1]} actions, teacher {t_BA.shape[-1]}")
    log_t = torch.log_softmax(t_BA / tau, -1)
    log_s = torch.log_softmax(s_BA, -1)
    kl_B = (log_t.exp() * (log_t - log_s)).sum(-1)
    return {"agreement": float((s_BA.argmax(-1) == t_BA.argmax(-1)).float().mean()), "kl": float(kl_B.mean())}
