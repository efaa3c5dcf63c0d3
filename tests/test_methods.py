"""Real-time distillation (Sun & Fazli) and multi-task distillation (Rusu's Multi-Dist), end to end at smoke scale."""

import json
import shutil

import numpy as np
import pytest
import torch

from workbench.cli import main
from workbench.distill.engine import load_teacher, teacher_states
from workbench.distill.multitask import (build_student, distill_multitask, load_multitask, multitask_config,
                                         save_multitask, width_for_share)
from workbench.distill.realtime import RealtimeConfig, StateMemory, realtime_distill, speedup_table
from workbench.envs import make_env
from workbench.evaluate import agreement, evaluate, geometric_mean_pct
from workbench.nets import build, preset_spec
from workbench.runs import CheckpointError
from workbench.teachers import TEACHERS_DIR
from workbench.trace import record_trace


# -- real-time --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def realtime_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rt") / "run"
    config = RealtimeConfig(env_id="CartPole-v1", preset="smoke", teacher_steps=8_192, eval_points=4, eval_episodes=3,
                            final_eval_episodes=3, distill_preset="smoke", tail_updates=40, updates_per_state=1 / 8,
                            batch_size=64)
    return out, realtime_distill(config, out, progress_bar=False)


def test_realtime_students_learn_from_the_teacher_while_it_trains(realtime_run):
    out, card = realtime_run
    assert set(card["students"]) == {"net3", "tiny"}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    live = [r for r in rows if r["phase"] == "realtime"]
    assert len(live) >= 4  # evaluated while the teacher trained, not only after
    teacher_clock = [r["teacher_seconds"] for r in live]
    assert teacher_clock == sorted(teacher_clock)
    for name in ("net3", "tiny"):
        # A student's clock is the teacher's plus its own updates; it learned as the teacher did.
        assert all(r[f"{name}/seconds"] >= r["teacher_seconds"] for r in live)
        assert live[-1][f"{name}/updates"] > live[0][f"{name}/updates"] > 0
    # It copies the final teacher much better than an untrained student of its size does.
    teacher, _, spec = load_teacher(str(out / "teacher"))
    obs, _ = teacher_states(teacher, spec, 1_000, 5, 0.0)
    fresh = agreement(build(preset_spec("net3", teacher.spec), "pi", seed=99), teacher, obs)["agreement"]
    assert card["students"]["net3"]["agreement"] > fresh + 0.1


def test_realtime_card_times_both_clocks_and_the_baseline(realtime_run):
    out, card = realtime_run
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for name, r in card["students"].items():
        seq = json.loads((out / "sequential" / name / "card.json").read_text())
        assert seq["teacher"] == str(out / "teacher") and seq["student_net"] == name
        assert r["sequential_return_mean"] == seq["return_mean"]
        seq_points = [(x[f"{name}/seq_seconds"], x[f"{name}/seq_return"]) for x in rows if f"{name}/seq_return" in x]
        # The card rounds the teacher's time to 0.1 s, the points to 0.01 s: 2.05 against a card's 2.1 is in (2.1 - 0.05
        # is 2.0500000000000003 in floats, hence the 1e-9).
        assert seq_points and all(t >= card["teacher"]["teacher_seconds"] - 0.05 - 1e-9 for t, _ in seq_points)
        if r["time_to_95_sequential"] is not None:  # the first point at the threshold, not any later one
            first = next(t for t, ret in seq_points if ret >= card["target_return"])
            assert r["time_to_95_sequential"] == first
        if r["time_to_95_realtime"] and r["time_to_95_sequential"]:
            assert r["speedup"] == pytest.approx(r["time_to_95_realtime"] / r["time_to_95_sequential"])
    assert list(speedup_table(card)["student"]) == ["net3", "tiny"]
    with pytest.raises(FileExistsError, match="finished"):
        realtime_distill(RealtimeConfig(env_id="CartPole-v1", preset="smoke"), out, progress_bar=False)


def test_time_to_threshold_uses_the_final_teacher_on_the_points_own_seeds():
    from workbench.distill.realtime import times_to_threshold

    rows = [{"phase": "realtime", "teacher_seconds": 10, "teacher_return": 4.0, "a/return": 5.0, "a/seconds": 12},
            {"phase": "realtime", "teacher_seconds": 20, "teacher_return": 10.0, "a/return": 9.4, "a/seconds": 23},
            {"phase": "realtime", "teacher_seconds": 30, "teacher_return": 10.0, "a/return": 9.6, "a/seconds": 34},
            {"phase": "sequential", "a/seq_seconds": 40, "a/seq_return": 8.0},
            {"phase": "sequential", "a/seq_seconds": 45, "a/seq_return": 9.5}]
    t = times_to_threshold(rows)
    assert t["target_return"] == pytest.approx(9.5)  # 95% of the last realtime teacher evaluation
    assert t["a"] == {"time_to_95_realtime": 34, "time_to_95_sequential": 45, "speedup": pytest.approx(34 / 45),
                      "speedup_bound": pytest.approx(20 / 45)}
    assert t["teacher_time_to_95"] == 20  # the teacher itself first played at the target at 20 s: the floor


def test_state_memory_keeps_the_newest_states_with_their_labels():
    m = StateMemory(5, (2,), np.float32, 3)
    for i in range(3):  # 9 states into 5 slots
        s = np.full((3, 2), i, np.float32) + np.arange(3)[:, None] * 0.1
        m.add(s, np.repeat(s[:, :1], 3, 1))
    assert m.size == 5
    obs, labels = m.sample(200, np.random.default_rng(0))
    assert torch.equal(labels[:, 0], obs[:, 0])  # labels travel with their states
    assert obs[:, 0].min() >= 1.0  # the oldest states were overwritten


def test_realtime_rejects_an_unknown_algorithm_before_writing(tmp_path):
    with pytest.raises(ValueError, match="algo \\(--algo\\) must be one of ppo, dqn, got 'a2c'"):
        realtime_distill(RealtimeConfig(env_id="CartPole-v1", algo="a2c"), tmp_path / "x", progress_bar=False)
    assert not (tmp_path / "x").exists()


# -- multi-task -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def second_teacher(tmp_path_factory):
    """A quickly trained Asterix teacher (smoke scale): a second MinAtar game with other channel/action counts."""
    out = tmp_path_factory.mktemp("asterix") / "teacher"
    assert main(["train", "--env", "MinAtar/Asterix-v1", "--preset", "smoke", "--out", str(out), "--quiet"]) == 0
    return str(out)


@pytest.fixture(scope="module")
def multitask_run(tmp_path_factory, second_teacher):
    out = tmp_path_factory.mktemp("mt") / "run"
    config = multitask_config("smoke", ["minatar-breakout", second_teacher], steps_per_game=1_024, eval_episodes=3)
    return out, config, distill_multitask(config, out, progress_bar=False)


def test_multitask_student_has_a_head_per_game_and_reports_each(multitask_run):
    out, config, card = multitask_run
    assert card["games"] == ["MinAtar/Breakout-v1", "MinAtar/Asterix-v1"]
    assert json.loads((out / "config.json").read_text())["lr"] == 1e-3  # the MinAtar family's default_lr
    student = load_multitask(out)
    assert [h[-1].out_features for h in student.heads] == [3, 5]  # games keep their own action counts
    assert all(h[0].out_features == 128 for h in student.heads)  # Rusu: a 128-unit layer per game
    assert card["params"] == student.n_params < card["teachers_params_sum"]
    pcts = [g["pct_of_teacher"] for g in card["per_game"].values()]
    assert card["geomean_pct_of_teacher"] == pytest.approx(geometric_mean_pct(pcts))
    # Each game's head plays its own game: the card's return is what the loaded head scores on those seeds.
    spec = make_env("MinAtar/Breakout-v1", 1, 0)[1]
    again = evaluate(student.view("MinAtar/Breakout-v1"), spec.env_id, 3, config.eval_seed, spec.settings)
    assert again.mean == card["per_game"]["MinAtar/Breakout-v1"]["return_mean"]
    # Learned from the Breakout teacher: agrees with it far above an untrained student.
    teacher, _, bspec = load_teacher("minatar-breakout")
    obs, _ = teacher_states(teacher, bspec, 1_000, 3, 0.0)
    loaded = [load_teacher(t) for t in config.teachers]
    untrained = build_student([t for t, _, _ in loaded], [s for _, _, s in loaded], width=1.0, head_units=128, seed=123)
    assert (agreement(student.view(0), teacher, obs)["agreement"]
            > agreement(untrained.view(0), teacher, obs)["agreement"] + 0.1)


def test_fewer_channels_are_padded_with_zero_channels(multitask_run):
    out, _, _ = multitask_run
    student = load_multitask(out)
    assert student.trunk_spec.obs_shape[0] == 4  # Breakout and Asterix both have 4; pad a 2-channel input
    obs = torch.rand(5, 2, 10, 10)
    padded = torch.cat([obs, torch.zeros(5, 2, 10, 10)], 1)
    assert torch.allclose(student.logits(obs, 1), student.logits(padded, 1))


def test_multitask_checkpoint_round_trips_and_foreign_files_fail(multitask_run, tmp_path):
    out, _, _ = multitask_run
    student = load_multitask(out)
    save_multitask(tmp_path / "copy.safetensors", student)
    again = load_multitask(tmp_path / "copy.safetensors")
    obs = torch.rand(4, 4, 10, 10)
    assert torch.equal(again.logits(obs, 0), student.logits(obs, 0))
    from workbench.teachers import teacher_path
    with pytest.raises(CheckpointError, match="not a multi-task student"):
        load_multitask(teacher_path("minatar-breakout"))


def test_the_player_works_on_any_game_of_a_multitask_student(multitask_run, second_teacher):
    out, _, _ = multitask_run
    student = load_multitask(out)
    teacher, _, spec = load_teacher(second_teacher)
    trace = record_trace(teacher, student.view(spec.env_id), spec, max_steps=30, keep_snapshots=False)
    assert trace.student_out.shape[1] == 5 and len(trace.actions) > 0


def test_multitask_refuses_teachers_that_cannot_share_a_student(tmp_path):
    with pytest.raises(ValueError, match="one observation family"):
        distill_multitask(multitask_config("smoke", ["minatar-breakout", "cartpole"]), tmp_path / "a", progress_bar=False)
    with pytest.raises(ValueError, match="names a teacher twice"):
        multitask_config("smoke", ["minatar-breakout", "minatar-breakout"])
    shutil.copytree(TEACHERS_DIR / "minatar-breakout", tmp_path / "copy")
    with pytest.raises(ValueError, match="same game"):
        distill_multitask(multitask_config("smoke", ["minatar-breakout", str(tmp_path / "copy")]), tmp_path / "b",
                          progress_bar=False)
    assert not (tmp_path / "b").exists()


def test_realtime_hangs_students_on_a_dqn_teacher_too(tmp_path):
    config = RealtimeConfig(env_id="CartPole-v1", algo="dqn", preset="smoke", teacher_steps=2_000, eval_points=2,
                            eval_episodes=2, final_eval_episodes=3, students=("tiny",), sequential=False,
                            updates_per_state=1 / 16, batch_size=32)
    card = realtime_distill(config, tmp_path / "run", progress_bar=False)
    assert card["teacher_algo"] == "dqn" and card["students"]["tiny"]["updates"] > 0
    assert "time_to_95_sequential" not in card["students"]["tiny"]  # no baseline was asked for
    assert json.loads((tmp_path / "run" / "teacher" / "card.json").read_text())["kind"] == "q"


def test_multitask_resumes_from_its_checkpoint(tmp_path, second_teacher):
    teachers = ["minatar-breakout", second_teacher]
    distill_multitask(multitask_config("smoke", teachers, steps_per_game=256), tmp_path, progress_bar=False)
    first = json.loads((tmp_path / "checkpoint.json").read_text())
    # Another recipe is refused by name and changes nothing; the same recipe goes on to more steps per game.
    before = (tmp_path / "metrics.jsonl").read_text()
    assert main(["distill-multitask", "--teachers", *teachers, "--preset", "smoke", "--steps-per-game", "512",
                 "--memory-per-game", "800", "--out", str(tmp_path), "--resume", "--quiet"]) == 2
    assert (tmp_path / "metrics.jsonl").read_text() == before
    assert main(["distill-multitask", "--teachers", *teachers, "--preset", "smoke", "--steps-per-game", "512",
                 "--out", str(tmp_path), "--resume", "--quiet"]) == 0
    card = json.loads((tmp_path / "card.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    resumed = [r for r in rows if r["segment"] == 1]
    # It went on from the checkpoint's step and update count instead of starting over.
    assert resumed and all(r["step"] > first["step"] for r in resumed)
    assert resumed[0]["charts/updates"] > first["updates"] and card["env_steps_per_game"] == 512


def test_student_share_picks_the_widest_trunk_within_that_share_of_the_teachers():
    names = ["minatar-breakout", "minatar-freeway"]
    loaded = [load_teacher(n) for n in names]
    teachers, specs = [t for t, _, _ in loaded], [s for _, _, s in loaded]
    total = sum(t.n_params for t in teachers)
    for share in (0.1, 0.3):
        width = width_for_share(names, share)
        size = build_student(teachers, specs, width, 128, 0).n_params
        assert size <= share * total < build_student(teachers, specs, width + 0.02, 128, 0).n_params
    with pytest.raises(ValueError, match="between 0 and 1"):
        width_for_share(names, 1.5)
    assert main(["distill-multitask", "--teachers", *names, "--student", "0.1", "--width", "2", "--out", "x"]) == 2


def test_realtime_times_have_no_target_where_the_teacher_is_no_better_than_random():
    from workbench.distill.realtime import times_to_threshold

    rows = [{"phase": "realtime", "teacher_return": -500.0, "teacher_seconds": 1.0, "net3/return": -480.0,
             "net3/seconds": 2.0}]
    times = times_to_threshold(rows, 0.95, random_return=-500.0)
    assert times["target_return"] is None and times["net3"]["time_to_95_realtime"] is None
    # an Acrobot teacher that learnt: 95% of the way from random play to it
    rows[0]["teacher_return"] = -100.0
    rows.append({"phase": "realtime", "teacher_return": -100.0, "teacher_seconds": 3.0, "net3/return": -110.0,
                 "net3/seconds": 4.0})
    times = times_to_threshold(rows, 0.95, random_return=-500.0)
    assert times["target_return"] == pytest.approx(-120.0) and times["net3"]["time_to_95_realtime"] == 4.0
    assert RealtimeConfig(students=["net3"]).students == ("net3",)
