"""Atari under SB3's and cleanrl's conventions: the workbench env gives the frames and whole-game returns of the
libraries' own pipelines, step for step, across lost lives and new games."""

import json

import numpy as np
import pytest
import torch

from workbench.envs import EnvError, make_env

pytest.importorskip("ale_py")
cv2 = pytest.importorskip("cv2")


@pytest.mark.parametrize("convention", ["sb3", "cleanrl"])
def test_frames_and_returns_match_the_library(convention):
    """Against SB3's own make_atari_env + VecFrameStack, and cleanrl's wrapper chain (imports.library_env, what a
    teacher's card plays for its library's return): every observation of two whole games of random play."""
    pytest.importorskip("stable_baselines3")
    from workbench.imports import library_env

    rng = np.random.default_rng(0)
    lives_lost = 0
    for seed in (3, 4):
        venv, spec = make_env("ALE/Breakout-v5", 1, seed, conventions=convention)
        lib, first = library_env(spec, convention)(seed)
        obs, _ = venv.reset(seed=seed)
        assert spec.settings["conventions"] == convention and obs.shape == (1, 4, 84, 84)
        np.testing.assert_array_equal(obs[0], first)
        if convention == "sb3":
            assert not first[:3].any()  # SB3's stack starts from zeros
        else:
            assert (first == first[-1]).all()  # cleanrl's from copies of the first frame
        ours = theirs = 0.0
        for t in range(5000):
            a = int(rng.integers(0, spec.n_actions))
            obs, r, term, trunc, info = venv.step(np.array([a]))
            lib_obs, lib_r, lib_done, _, _ = lib.step(a)
            ours, theirs = ours + float(r[0]), theirs + lib_r
            lives_lost += bool(info.get("life_lost", [False])[0])
            assert bool(term[0] or trunc[0]) == lib_done, f"seed {seed} step {t}"
            if lib_done:
                break
            np.testing.assert_array_equal(obs[0], lib_obs, err_msg=f"seed {seed} step {t}")
        assert lib_done and ours == theirs
        lib.close()
    assert lives_lost >= 8  # both games went through every lost life


def test_library_conventions_refuse_what_their_wrappers_fix():
    with pytest.raises(EnvError, match="conventions='sb3'.*leave those settings out"):
        make_env("ALE/Breakout-v5", 1, 0, conventions="sb3", use_fire_reset=False)
    with pytest.raises(EnvError, match="'gym' is not one of"):
        make_env("ALE/Breakout-v5", 1, 0, conventions="gym")
    with pytest.raises(EnvError, match="unknown setting"):
        make_env("MinAtar/Breakout-v1", 1, 0, conventions="sb3")


def test_default_conventions_leave_recorded_settings_as_they_were():
    _, spec = make_env("ALE/Breakout-v5", 1, 0)
    _, same = make_env("ALE/Breakout-v5", 1, 0, conventions="ale-py")
    assert "conventions" not in spec.settings and spec.settings == same.settings


@pytest.mark.parametrize("convention", ["sb3", "cleanrl"])
def test_replay_memory_reads_back_every_stack_the_env_gave(convention):
    """Stacks restart after a lost life and pad with zeros (SB3) or the first frame (cleanrl): the memory's
    stacks-on-read must be the observations the env returned, or a student learns on frames nobody saw."""
    from workbench.collect import Collector
    from workbench.envs import final_obs
    from workbench.memory import ReplayMemory, stack_padding

    envs, spec = make_env("ALE/Breakout-v5", 2, 5, conventions=convention)
    obs, _ = envs.reset(seed=5)
    memory = ReplayMemory(4_000, spec.obs_shape, spec.obs_dtype, 2, 4, pad=stack_padding(spec.settings))
    collector = Collector(envs, spec, memory, obs)
    rng = np.random.default_rng(1)
    seen = {"restart": 0, "done": 0}
    for t in range(700):
        before = collector.obs.copy()
        step = envs.step
        captured = {}

        def spy(action):
            out = step(action)
            captured["out"] = out
            return out
        envs.step = spy
        collector.step(lambda o: rng.integers(0, spec.n_actions, len(o)))
        envs.step = step
        next_obs, _, term, trunc, info = captured["out"]
        done = term | trunc
        truth = final_obs(next_obs, done, info)
        j = memory.head - 1
        for i in range(2):
            np.testing.assert_array_equal(memory.stacked(np.array([i]), np.array([(j[i] - 1) % memory.per_env]))[0],
                                          before[i], err_msg=f"{convention} step {t} env {i}: the state")
            np.testing.assert_array_equal(memory.stacked(np.array([i]), np.array([j[i]]))[0], truth[i],
                                          err_msg=f"{convention} step {t} env {i}: the next state")
        seen["restart"] += int(np.asarray(info.get("life_lost", np.zeros(2, bool))).sum())
        seen["done"] += int(done.sum())
    assert seen["restart"] >= 4 and seen["done"] >= 1
    # The device mirror gathers its stacks by another path: the same stacks (forced on for a CPU here).
    e, j = memory.sample_indices(512, np.random.default_rng(3))
    memory.keep_on("cpu")
    np.testing.assert_array_equal(memory._stacked_on_mirror(e, j).numpy(), memory.stacked(e, j))


@pytest.mark.parametrize("convention", ["sb3", "cleanrl"])
def test_the_single_env_of_traces_plays_the_same_frames(convention):
    from workbench.trace import SingleEnv

    venv, spec = make_env("ALE/Breakout-v5", 1, 7, conventions=convention)
    single = SingleEnv(spec, seed=7)
    np.testing.assert_array_equal(venv.reset(seed=7)[0][0], single.reset())
    rng = np.random.default_rng(2)
    for t in range(400):
        a = int(rng.integers(spec.n_actions))
        v_obs, v_r, v_term, v_trunc, _ = venv.step(np.array([a]))
        s_obs, s_r, s_done = single.step(a)
        assert bool(v_term[0] or v_trunc[0]) == s_done and v_r[0] == s_r
        if s_done:
            break
        np.testing.assert_array_equal(v_obs[0], s_obs, err_msg=f"step {t}")


def test_a_student_of_an_sb3_atari_teacher_learns_under_sb3s_wrappers(tmp_path):
    """The import records SB3's conventions; a distillation from it collects in them (no overlap, which needs ale-py's
    send/recv) and says so in its card; asking for the overlap is refused by name before anything is written."""
    sb3 = pytest.importorskip("stable_baselines3")
    import dataclasses

    import ale_py
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    from workbench.config import ConfigError
    from workbench.distill.loop import distill, distill_config
    from workbench.imports import ImportConfig, import_teacher

    gym.register_envs(ale_py)
    sb3.PPO("CnnPolicy", VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", n_envs=1, seed=0), 4),
            seed=0).save(tmp_path / "model.zip")
    import_teacher(ImportConfig(origin="sb3", path=str(tmp_path / "model.zip"), env_id="ALE/Breakout-v5",
                                eval_episodes=1, library_return=False), tmp_path / "teacher")
    config = distill_config("smoke", str(tmp_path / "teacher"), beta="0", total_steps=512, eval_episodes=1)
    with pytest.raises(ConfigError, match="leave --overlap out"):
        distill(dataclasses.replace(config, overlap=True), tmp_path / "refused", progress_bar=False)
    assert not (tmp_path / "refused").exists()
    card = distill(config, tmp_path / "student", progress_bar=False)
    assert card["env_settings"]["conventions"] == "sb3" and card["teacher_queries"] == 512
    run_config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert run_config["overlap"] is False


def test_the_cleanrl_reference_loop_plays_cleanrls_frames_and_learns():
    """The loop `workbench bench` compares PPO teacher training with: its envs give the frames of cleanrl's chain
    (env i seeded seed + i, as a gymnasium vector env seeds them), and an update moves every layer."""
    from workbench.imports import cleanrl_atari_env
    from workbench.reference import CleanrlStylePPO

    ref = CleanrlStylePPO("Breakout", n_envs=2, n_steps=16, n_minibatches=2, update_epochs=1, seed=3)
    before = [p.detach().clone() for p in ref.params]
    ref.collect()
    assert ref.global_step == 32
    for i in range(2):
        env, _ = cleanrl_atari_env("BreakoutNoFrameskip-v4")
        np.testing.assert_array_equal(ref.b["obs"][0][i].numpy(), np.asarray(env.reset(seed=3 + i)[0]))
        env.close()
    assert ref.b["obs"].shape == (16, 2, 4, 84, 84) and ref.b["obs"].float().std() > 0
    assert np.isfinite(ref.learn())
    assert all(not torch.equal(a, b) for a, b in zip(before, ref.params))
    ref.close()
