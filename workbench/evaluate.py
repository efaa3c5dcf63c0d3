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
def agreement(student, teacher, obs, tau: float = 1.0) -> dict:
    """On the same states: share of argmax actions that agree, and mean KL(teacher || student).

    The teacher's distribution is softmax(teacher_logits / tau) (for a DQN teacher pass Rusu's tau).
    """
    s_BA = student.logits(obs)
    t_BA = teacher.logits(obs)
    if s_BA.shape[-1] != t_BA.shape[-1]:
        raise ValueError(f"student has {s_BA.shape[-1]} actions, teacher {t_BA.shape[-1]}")
    log_t = torch.log_softmax(t_BA / tau, -1)
    log_s = torch.log_softmax(s_BA, -1)
    kl_B = (log_t.exp() * (log_t - log_s)).sum(-1)
    return {"agreement": float((s_BA.argmax(-1) == t_BA.argmax(-1)).float().mean()), "kl": float(kl_B.mean())}


@torch.no_grad()
def confusion_on_heldout(student_run, n_states: int = 2_000, seed: int = 20_000, epsilon: float = 0.05):
    """([A, A] counts of teacher action x student action, action names) on fresh teacher-driven states.

    ``student_run`` is a distillation run folder; its config names the teacher.
    """
    from .distill.loop import load_teacher, teacher_states
    from .runs import Run, load_policy
    from .teachers import teacher_path
    from .trace import confusion

    student_run = teacher_path(student_run)
    run = Run(student_run)
    if "teacher" not in run.config:
        raise ValueError(f"{student_run} is not a distillation run (its config names no teacher)")
    teacher, _, spec = load_teacher(run.config["teacher"])
    student = load_policy(student_run)
    obs_N, t_NA = teacher_states(teacher, spec, n_states, seed, epsilon)
    s_NA = student.logits(obs_N)
    return confusion(t_NA.argmax(-1).numpy(), s_NA.argmax(-1).numpy(), spec.n_actions), list(spec.action_meanings)
