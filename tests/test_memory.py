import numpy as np
import pytest

from workbench.collect import Collector
from workbench.envs import make_env
from workbench.memory import ReplayMemory


def _play(env_id, n_envs, steps, capacity, seed=0):
    """Collect with random actions and keep every real (obs, next_obs) the env produced, in order per env."""
    envs, spec = make_env(env_id, n_envs, seed)
    obs, _ = envs.reset(seed=seed)
    memory = ReplayMemory(capacity, spec.obs_shape, spec.obs_dtype, n_envs, spec.settings.get("stack_num", 1))
    collector = Collector(envs, spec, memory, obs)
    rng = np.random.default_rng(seed)
    seen = []
    for _ in range(steps):
        before = collector.obs.copy()
        collector.step(lambda o: rng.integers(0, spec.n_actions, n_envs))
        seen.append(before)
    envs.close()
    memory.flush()  # the collector's last steps may still wait in the staging buffer; the arrays are read directly
    return memory, spec, seen


@pytest.mark.parametrize("env_id,n_envs,steps,settings", [
    ("MinAtar/Breakout-v1", 8, 700, {}),
    ("CartPole-v1", 3, 700, {}),
    ("ALE/Breakout-v5", 2, 400, {}),
    ("ALE/Breakout-v5", 2, 400, {"conventions": "sb3"}),  # lost lives restart the frame stack
])
def test_deferred_writes_leave_the_memory_as_writing_each_step(env_id, n_envs, steps, settings):
    """Steps staged and written in runs (the collector's default) against each step written as it comes: the same
    arrays to the last byte, the same ended episodes; across episode ends, stack restarts, a wrapping ring and
    the memory being read (flushed) at odd moments."""
    out = []
    for defer in (True, False):
        envs, spec = make_env(env_id, n_envs, 0, **settings)
        obs, _ = envs.reset(seed=0)
        memory = ReplayMemory(600 * n_envs // 2, spec.obs_shape, spec.obs_dtype, n_envs,
                              spec.settings.get("stack_num", 1), extras={"t": ((3,), np.float32)})
        collector = Collector(envs, spec, memory, obs, defer=defer)
        rng = np.random.default_rng(1)
        episodes = []
        for t in range(steps):
            episodes += collector.step(lambda o: rng.integers(0, spec.n_actions, n_envs),
                                       lambda o: {"t": rng.random((n_envs, 3)).astype(np.float32)})
            if t % 97 == 0:
                len(memory)
        envs.close()
        out.append((memory.state_arrays(), episodes))
    (deferred, ep_deferred), (eager, ep_eager) = out
    assert ep_deferred == ep_eager and len(ep_eager) >= 2
    for key in eager:
        np.testing.assert_array_equal(deferred[key], eager[key], err_msg=key)
    assert eager["written"].min() > 300 and eager["first"].sum() >= 2 * n_envs


def test_atari_stacks_read_back_exactly_as_the_env_gave_them():
    memory, spec, seen = _play("ALE/Pong-v5", 2, 300, capacity=2_000)
    # Stream e, transition t (no episode ends in 300 Pong steps): entry t holds obs t.
    for t in range(0, 300, 7):
        for e in range(2):
            stacked = memory.stacked(np.array([e]), np.array([t]))[0]
            assert np.array_equal(stacked, seen[t][e]), (t, e)
    # Next observations too (they are the next entries' stacks).
    b = memory.sample(64, np.random.default_rng(0))
    assert b.obs.shape == (64, 4, 84, 84) and b.next_obs.shape == (64, 4, 84, 84)
    assert np.array_equal(b.obs[:, 1:].numpy(), b.next_obs[:, :-1].numpy())


def test_atari_memory_stores_about_one_frame_per_transition():
    memory, _, _ = _play("ALE/Pong-v5", 2, 600, capacity=1_000)  # wraps around
    assert memory.nbytes() / len(memory) <= 1.1 * 84 * 84


def test_episode_boundaries_pad_with_zeros_and_terminal_states_are_kept():
    memory, spec, seen = _play("CartPole-v1", 1, 400, capacity=2_000)
    assert memory.terminated.any()
    e, j = memory.sample_indices(2_000, np.random.default_rng(1))
    assert memory.has_tr[e, j].all()
    # A terminal transition's next state is the terminal obs, not the next episode's first.
    j_term = np.flatnonzero(memory.terminated[0] & memory.has_tr[0])[0]
    assert not memory.first[0, j_term + 1] and not memory.has_tr[0, j_term + 1] and memory.first[0, j_term + 2]


def test_extras_are_stored_beside_the_state():
    envs, spec = make_env("CartPole-v1", 2, 0)
    obs, _ = envs.reset(seed=0)
    memory = ReplayMemory(100, spec.obs_shape, spec.obs_dtype, 2, extras={"teacher": ((2,), np.float32)})
    collector = Collector(envs, spec, memory, obs)
    for _ in range(20):
        collector.step(lambda o: np.zeros(2, dtype=np.int64), lambda o: {"teacher": o[:, :2] * 10})
    states, extras = memory.sample_states(16, np.random.default_rng(0))
    assert np.allclose(extras["teacher"].numpy(), states[:, :2].numpy() * 10)


def test_empty_memory_says_so():
    with pytest.raises(ValueError, match="empty"):
        ReplayMemory(100, (4,), np.float32).sample(4, np.random.default_rng(0))


def test_sampling_is_uniform_over_valid_transitions_and_skips_stale_stacks():
    memory, _, _ = _play("ALE/Pong-v5", 2, 600, capacity=1_000)  # full and wrapped: 500 entries per stream
    e, j = memory.sample_indices(200_000, np.random.default_rng(0))
    assert memory._valid(e, j).all() and memory.has_tr[e, j].all()
    age = (j - memory.head[e]) % memory.per_env
    assert (age >= memory.stack - 1).all()  # never a stack reaching into overwritten frames
    counts = np.zeros((2, memory.per_env))
    np.add.at(counts, (e, j), 1)
    drawn = counts[counts > 0]
    assert len(drawn) == len(memory) - 2 * (memory.stack - 1)  # every other stored transition is reachable
    assert drawn.std() / drawn.mean() < 0.2  # ~ 1/sqrt(200) for uniform draws


def test_states_sampled_as_the_memory_grows_reach_every_transition_and_match_their_indices():
    envs, spec = make_env("MinAtar/Breakout-v1", 2, 0)
    obs, _ = envs.reset(seed=0)
    memory = ReplayMemory(1_000, spec.obs_shape, spec.obs_dtype, 2, extras={"teacher": ((3,), np.float32)})
    collector = Collector(envs, spec, memory, obs)
    rng = np.random.default_rng(0)
    for steps in (30, 200, 400):  # the last wraps both streams (500 entries each)
        for _ in range(steps):
            collector.step(lambda o: rng.integers(0, spec.n_actions, 2), lambda o: {"teacher": rng.random((2, 3))})
        e, j = memory.sample_indices(40_000, np.random.default_rng(steps))
        drawn = np.zeros_like(memory.has_tr)
        drawn[e, j] = True
        assert (drawn == memory.has_tr).all()  # every transition written so far, and only those
        states, extras = memory.sample_states(256, np.random.default_rng(steps))
        e, j = memory.sample_indices(256, np.random.default_rng(steps))
        assert np.array_equal(states.numpy(), memory.frames[e, j])
        assert np.array_equal(extras["teacher"].numpy(), memory.extras["teacher"][e, j])
    envs.close()
