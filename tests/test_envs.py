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
