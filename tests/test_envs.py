import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from workbench.envs import EnvError, make_env, make_single_env


@pytest.mark.parametrize("env_id,shape,dtype", [
    ("ALE/Pong-v5", (4, 84, 84), np.uint8),
    ("MinAtar/Breakout-v1", (4, 10, 10), np.uint8),
    ("MinAtar/SpaceInvaders-v1", (6, 10, 10), np.uint8),
    ("CartPole-v1", (4,), np.float32),
    ("Acrobot-v1", (6,), np.float32),
])
def test_every_family_follows_the_observation_convention(env_id, shape, dtype):
    envs, spec = make_env(env_id, n_envs=2, seed=0)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2,) + shape and obs.dtype == dtype
    assert spec.obs_shape == shape and spec.n_actions == len(spec.action_meanings) == envs.single_action_space.n
    obs, reward, term, trunc, info = envs.step(np.zeros(2, dtype=np.int64))
    assert obs.shape == (2,) + shape
    envs.close()


def test_ale_settings_are_explicit_and_recorded():
    envs, spec = make_env("ALE/Breakout-v5", 1, seed=0, repeat_action_probability=0.25)
    assert spec.settings["repeat_action_probability"] == 0.25
    for key in ("frameskip", "noop_max", "reward_clipping", "use_fire_reset", "episodic_life", "maxpool"):
        assert key in spec.settings
    assert spec.action_meanings == ("NOOP", "FIRE", "RIGHT", "LEFT")
    envs.close()


def test_same_seed_same_observations():
    a, _ = make_env("MinAtar/Breakout-v1", 2, seed=7)
    b, _ = make_env("MinAtar/Breakout-v1", 2, seed=7)
    oa, _ = a.reset(seed=7)
    ob, _ = b.reset(seed=7)
    for t in range(50):
        act = np.array([t % 3, (t + 1) % 3])
        oa, *_ = a.step(act)
        ob, *_ = b.step(act)
        assert np.array_equal(oa, ob)


@pytest.mark.parametrize("env_id", ["MinAtar/Breakout-v1", "MinAtar/Seaquest-v1", "CartPole-v1"])
def test_single_env_passes_gymnasium_env_checker(env_id):
    env, spec = make_single_env(env_id)
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize("bad", ["Pong", "ALE/NoSuchGame-v5", "MinAtar/Tetris-v1", "MountainCarContinuous-v0"])
def test_unknown_env_ids_list_the_supported_families(bad):
    with pytest.raises(EnvError, match="Supported env ids: ALE/<Game>-v5.*MinAtar.*CartPole-v1"):
        make_env(bad)


def test_unknown_setting_is_rejected():
    with pytest.raises(EnvError, match="unknown setting"):
        make_env("CartPole-v1", 1, sticky=0.3)


def test_missing_family_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "minatar" else real(name, *a))
    with pytest.raises(EnvError, match="pip install minatar"):
        make_env("MinAtar/Breakout-v1")


@pytest.mark.parametrize("bad,fix", [
    ("ALE/Pong-v4", "ALE/Pong-v5"),
    ("ALE/Breakout-v4", "ALE/Breakout-v5"),
    ("PongNoFrameskip-v4", "ALE/Pong-v5"),
    ("Breakout-v0", "ALE/Breakout-v5"),
    ("ALE/Pong-ram-v5", "ALE/Pong-v5"),
])
def test_atari_ids_other_than_v5_are_refused_with_the_fix(bad, fix, monkeypatch):
    # Refused before anything is built: a v4 id would otherwise run (and be recorded) as a v5 env.
    import ale_py.vector_env

    def built(*a, **k):
        raise AssertionError("an env was built")

    monkeypatch.setattr(ale_py.vector_env, "AtariVectorEnv", built)
    with pytest.raises(ValueError, match=r"ALE/<Game>-v5") as err:
        make_env(bad, 1, seed=0)
    assert bad in str(err.value) and f"Use '{fix}'" in str(err.value)
    assert "repeat_action_probability" in str(err.value)  # the settings a v5 env is recorded with


def test_unknown_ids_name_the_three_supported_families():
    for bad in ("CartPole-v0", "MinAtar/Breakout-v0", "Humanoid-v4"):
        with pytest.raises(ValueError) as err:
            make_env(bad)
        msg = str(err.value)
        assert bad in msg and "ALE/<Game>-v5" in msg and "MinAtar/<Game>-v1" in msg and "CartPole-v1" in msg


def _rollout(reset, step, actions, seed):
    obs, _ = reset(seed=seed)
    seen, rewards = [obs], []
    for a in actions:
        obs, reward, term, trunc, _ = step(a)
        if np.ndim(term) == 0 and (term or trunc):  # the vector env resets by itself (SAME_STEP)
            obs, _ = reset()
        seen.append(obs)
        rewards.append(reward)
    return np.array(seen), np.array(rewards)


@pytest.mark.parametrize("env_id", ["MinAtar/Breakout-v1", "MinAtar/Asterix-v1"])
def test_minatar_seeded_reset_repeats_the_episode_with_sticky_actions(env_id):
    # MinAtar keeps its last action across reset(), and a sticky first step would repeat the previous episode's.
    env, spec = make_single_env(env_id)
    assert spec.settings["sticky_action_prob"] > 0
    for seed in range(6):
        actions = np.random.default_rng(seed).integers(0, spec.n_actions, 200)
        first = _rollout(env.reset, lambda a: env.step(int(a)), actions, seed)
        second = _rollout(env.reset, lambda a: env.step(int(a)), actions, seed)
        assert len(np.unique(first[0], axis=0)) > 20  # the actions moved the game along
        assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])

    venv, spec = make_env(env_id, 4, seed=0)
    for seed in range(6):
        actions = np.random.default_rng(seed).integers(0, spec.n_actions, (200, 4))
        first = _rollout(venv.reset, venv.step, actions, seed)
        second = _rollout(venv.reset, venv.step, actions, seed)
        assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    venv.close()


@pytest.mark.parametrize("env_id", ["MinAtar/Breakout-v1", "MinAtar/Asterix-v1", "CartPole-v1"])
def test_worker_processes_step_the_same_envs_as_one_process(env_id):
    from workbench.vector import ProcessVectorEnv

    one, spec = make_env(env_id, 10, seed=3, num_threads=1)
    many = ProcessVectorEnv(env_id, 10, 3, 3, {})
    assert [s.stop - s.start for s in many.shares] == [3, 4, 3]
    try:
        for seed in (3, list(range(20, 30))):  # an int seeds env i with seed + i; a list gives each env its own
            np.testing.assert_array_equal(one.reset(seed=seed)[0], many.reset(seed=seed)[0])
            rng, ends = np.random.default_rng(0), 0
            for t in range(600):
                act = rng.integers(0, spec.n_actions, 10)
                a, b = one.step(act), many.step(act)
                for x, y in zip(a[:4], b[:4]):
                    assert x.dtype == y.dtype
                    np.testing.assert_array_equal(x, y, err_msg=f"step {t}")
                assert set(a[4]) == set(b[4]), f"step {t}: info keys"
                if "final_obs" in a[4]:  # SAME_STEP: the terminal observations of the envs that ended
                    ends += 1
                    np.testing.assert_array_equal(a[4]["_final_obs"], b[4]["_final_obs"])
                    for i in np.flatnonzero(a[4]["_final_obs"]):
                        np.testing.assert_array_equal(a[4]["final_obs"][i], b[4]["final_obs"][i])
            assert ends > 5
    finally:
        one.close()
        many.close()
    assert not any(p.is_alive() for p in many._procs)


def test_make_env_spreads_many_envs_over_worker_processes_only_where_asked_and_it_pays(monkeypatch):
    from workbench.vector import MIN_ENVS_PER_WORKER, ProcessVectorEnv

    n = 2 * MIN_ENVS_PER_WORKER
    monkeypatch.delenv("WORKBENCH_ENV_THREADS", raising=False)
    default, _ = make_env("MinAtar/Breakout-v1", n, seed=0)  # not asked: one process
    monkeypatch.setenv("WORKBENCH_ENV_THREADS", "2")
    spread, spec = make_env("MinAtar/Breakout-v1", n, seed=0)
    alone, _ = make_env("MinAtar/Breakout-v1", n, seed=0, num_threads=1)
    few, _ = make_env("MinAtar/Breakout-v1", n - 1, seed=0)  # fewer than MIN_ENVS_PER_WORKER a worker
    try:
        assert isinstance(spread, ProcessVectorEnv) and len(spread.shares) == 2
        for e in (default, alone, few):
            assert not isinstance(e, ProcessVectorEnv)
        assert spec.action_meanings == ("NOOP", "LEFT", "RIGHT")
        # make_env has reset both with the seed: they start and go on alike
        act = np.random.default_rng(1).integers(0, 3, (50, n))
        for t in range(50):
            np.testing.assert_array_equal(spread.step(act[t])[0], alone.step(act[t])[0])
    finally:
        for e in (default, spread, alone, few):
            e.close()


def test_env_workers_refuse_misuse_and_name_a_failing_or_killed_worker():
    import os
    import signal

    from workbench.vector import ProcessVectorEnv

    envs = ProcessVectorEnv("MinAtar/Breakout-v1", 4, 0, 2, {})
    envs.reset(seed=0)
    envs.send(np.zeros(4, dtype=np.int64))
    with pytest.raises(RuntimeError, match="twice"):
        envs.send(np.zeros(4, dtype=np.int64))
    with pytest.raises(RuntimeError, match="in flight"):
        envs.reset(seed=0)
    envs.recv()
    with pytest.raises(ValueError, match="one seed per env"):
        envs.reset(seed=[1, 2, 3])
    envs.step(np.zeros(4, dtype=np.int64))  # still usable after refusals
    with pytest.raises(RuntimeError, match="env worker failed: .*Error"):
        envs.step(np.array([0, 0, 99, 0]))  # MinAtar has no action 99
    assert not any(p.is_alive() for p in envs._procs)

    envs = ProcessVectorEnv("CartPole-v1", 3, 0, 8, {})  # more workers asked than envs: one env each
    assert len(envs.shares) == 3
    envs.reset(seed=0)
    os.kill(envs._procs[1].pid, signal.SIGKILL)
    envs._procs[1].join(5)
    with pytest.raises(RuntimeError, match="env worker"):
        envs.step(np.zeros(3, dtype=np.int64))
    assert envs.closed and not any(p.is_alive() for p in envs._procs)


def test_an_interrupted_step_closes_the_env_workers_instead_of_hanging():
    from workbench.vector import ProcessVectorEnv

    class Interrupted:  # a Ctrl-C that lands while the caller waits on the second worker's reply
        def __init__(self, pipe):
            self.pipe = pipe

        def recv(self):
            self.pipe.recv()
            raise KeyboardInterrupt

        def __getattr__(self, name):
            return getattr(self.pipe, name)

    envs = ProcessVectorEnv("CartPole-v1", 4, 0, 2, {})
    envs.reset(seed=0)
    envs._pipes[1] = Interrupted(envs._pipes[1])
    with pytest.raises(KeyboardInterrupt):
        envs.step(np.zeros(4, dtype=np.int64))
    assert envs.closed and not any(p.is_alive() for p in envs._procs)
