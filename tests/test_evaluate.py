"""Evaluation on fixed seeds: episodes where a greedy policy is stuck on frozen frames end early, return intact."""

import pytest
import torch

from workbench.envs import make_env
from workbench.evaluate import evaluate

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
