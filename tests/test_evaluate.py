"""Evaluation on fixed seeds: episodes where a greedy policy is stuck on frozen frames end early, return intact."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.envs import make_env
from workbench.evaluate import evaluate, pct_of_teacher, threshold_return

BREAKOUT = "ALE/Breakout-v5"


class AlwaysNoop:
    """Never presses FIRE: after its first lost life Atari Breakout waits for it forever."""

    def eval(self):
        return self

    def act(self, obs, greedy=True, generator=None):
        return torch.zeros(len(obs), dtype=torch.long)


def test_a_greedy_policy_on_frozen_frames_is_cut_short_with_its_return_unchanged():
    _, spec = make_env(BREAKOUT, 1, seed=0)
    settings = spec.settings
    short = evaluate(AlwaysNoop(), BREAKOUT, 3, 10_000, settings, stall_steps=100)
    longer = evaluate(AlwaysNoop(), BREAKOUT, 3, 10_000, settings, stall_steps=400)
    assert short.stalled == longer.stalled == 3
    assert short.summary()["stalled_episodes"] == 3
    # Nothing happens on frozen frames: the same returns, and each episode 300 steps longer, not a game further.
    assert short.returns.tolist() == longer.returns.tolist()
    assert (longer.lengths - short.lengths).tolist() == [300, 300, 300]
    assert short.lengths.max() < 1_000  # not the 27,000 steps of the env's 108k-frame cap


def test_a_policy_that_explores_is_never_cut():
    _, spec = make_env(BREAKOUT, 1, seed=0)
    # Epsilon presses FIRE now and then, so the game goes on; the same frames need not give the same action, so
    # even 5 frozen steps (which a waiting NOOP policy sits through on most lives, and which end the greedy
    # episodes) do not end it.
    assert evaluate(AlwaysNoop(), BREAKOUT, 2, 10_000, spec.settings, stall_steps=5).stalled == 2
    result = evaluate(AlwaysNoop(), BREAKOUT, 2, 10_000, spec.settings, epsilon=0.1, stall_steps=5)
    assert result.stalled == 0


def test_fire_after_life_loss_relaunches_the_ball_for_the_policy():
    _, spec = make_env(BREAKOUT, 1, seed=0)
    result = evaluate(AlwaysNoop(), BREAKOUT, 3, 10_000, spec.settings, fire_after_life_loss=True)
    # All five lives are played (a NOOP paddle misses each ball in about 25 steps), none waits on frozen frames.
    assert result.stalled == 0 and result.lengths.max() < 300
    with pytest.raises(ValueError, match="needs an Atari game with lives and a FIRE action"):
        evaluate(AlwaysNoop(), "CartPole-v1", 1, 0, fire_after_life_loss=True)


class _Pump:
    """Acrobot's energy pump: torque along the second joint's velocity (swings up in ~85 steps), with a share of
    uniformly random actions to make a worse player."""

    def __init__(self, epsilon: float = 0.0, seed: int = 0):
        self.epsilon, self.rng = epsilon, np.random.default_rng(seed)

    def eval(self):
        return self

    def act(self, obs, greedy=True, generator=None):
        act = np.where(np.asarray(obs)[:, 5] > 0, 2, 0)
        return torch.as_tensor(np.where(self.rng.random(len(act)) < self.epsilon, self.rng.integers(0, 3, len(act)), act))


def test_pct_of_teacher_is_right_for_negative_returns_on_acrobot():
    from workbench.distill.engine import score_card

    _, spec = make_env("Acrobot-v1", 1, 0)
    teacher = evaluate(_Pump(), "Acrobot-v1", 5, 0)
    better, worse = evaluate(_Pump(0.3), "Acrobot-v1", 5, 0), evaluate(_Pump(0.6), "Acrobot-v1", 5, 0)
    assert teacher.mean > better.mean > worse.mean > -500 and teacher.mean < 0
    # The raw ratio ranks the worse student highest, above the teacher itself.
    assert worse.mean / teacher.mean > better.mean / teacher.mean > 1
    cards = [score_card(s, teacher, spec, 5, 0) for s in (teacher, better, worse)]
    assert all(c["pct_of_teacher_kind"] == "random-normalised" and c["random_return_mean"] == -500.0 for c in cards)
    pcts = [c["pct_of_teacher"] for c in cards]
    assert pcts[0] == pytest.approx(100.0) and 100 > pcts[1] > pcts[2] > 0
    assert pcts[2] == pytest.approx(100 * (worse.mean + 500) / (teacher.mean + 500))
    # the real-time target is the inverse: 95% of this teacher lies between random play and the teacher
    assert -500 < threshold_return(0.95, teacher.mean, -500.0) < teacher.mean


def test_pct_of_teacher_keeps_rusus_ratio_where_the_teacher_scores_above_zero():
    # Pong: a positive teacher; a student losing every point is far below 0%, and the order of students holds.
    assert pct_of_teacher(20.7, 20.7) == (100.0, "raw")
    assert pct_of_teacher(-21.0, 20.7)[0] == pytest.approx(-101.4, abs=0.1)
    assert pct_of_teacher(-21.0, 20.7)[0] < pct_of_teacher(0.0, 20.7)[0] < pct_of_teacher(10.0, 20.7)[0]
    assert threshold_return(0.95, 20.7) == pytest.approx(19.665)
    # A teacher no better than random has no % of it.
    assert pct_of_teacher(-400.0, -500.0, -500.0) == (None, "random-normalised")
    with pytest.raises(ValueError, match="not above a random policy"):
        threshold_return(0.95, -500.0, -500.0)


def test_committed_tables_use_the_one_definition():
    """Every committed student row (Atari Pong's included) is its return over its teacher's: the definition changed
    no committed number."""
    results = pd.read_csv(Path(__file__).resolve().parent.parent / "data" / "results" / "rusu_results.csv")
    assert (results.teacher_return_mean > 0).all()
    pong = results[results.env_id == "ALE/Pong-v5"]
    assert len(pong) == 36
    for frame in (results, pong):
        expect = [pct_of_teacher(s, t)[0] for s, t in zip(frame.return_mean, frame.teacher_return_mean)]
        assert np.allclose(frame.pct_of_teacher, expect)
