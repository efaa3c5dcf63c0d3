"""The shipped teachers: present, loadable, small, and as good as their cards say."""

import json

import pytest

from workbench.cli import main
from workbench.evaluate import evaluate
from workbench.runs import Run, load_policy
from workbench.teachers import IN_TRAINING_DIR, TEACHERS_DIR, list_teachers, paper_dqn, teacher_path


SHIPPED = sorted(p.parent.name for p in TEACHERS_DIR.glob("*/card.json"))


def test_the_shipped_set_holds_the_five_minatar_teachers():
    assert {"cartpole", "minatar-asterix", "minatar-breakout", "minatar-freeway", "minatar-seaquest",
            "minatar-space_invaders"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_teacher_is_a_complete_small_run_folder(name):
    path = teacher_path(name)
    for f in ("config.json", "metrics.jsonl", "model.safetensors", "card.json"):
        assert (path / f).exists(), f
    assert not (path / "checkpoint.safetensors").exists(), "resume state is not shipped"
    assert sum(p.stat().st_size for p in path.iterdir()) < 8 * 2**20
    card = Run(path).card
    assert card["return_n"] >= 30 and card["wall_seconds"] > 0 and "machine" in card
    assert load_policy(path).n_params == card["params"]
    assert card.get("source") and card.get("how_trained")
    if not card["env_id"].startswith("CartPole"):  # the published DQN figure it is held against, and its source
        assert card["paper_dqn"] == paper_dqn(card["env_id"])[0] and card["paper_dqn_source"]


def test_cartpole_teacher_scores_500_on_30_fixed_seeds():
    path = teacher_path("cartpole")
    card = Run(path).card
    result = evaluate(load_policy(path), "CartPole-v1", 30, card["eval_seed"], card["env_settings"])
    assert result.mean == 500.0 and card["return_mean"] == 500.0


@pytest.mark.parametrize("name", [n for n in SHIPPED if n != "cartpole"])
def test_card_is_reproduced_on_its_own_seeds(name):
    path = teacher_path(name)
    card = Run(path).card
    episodes = 2 if card["env_id"].startswith("ALE/") else 10  # an Atari episode is thousands of CNN steps
    result = evaluate(load_policy(path), card["env_id"], episodes, card["eval_seed"], card["env_settings"])
    # Same policy, same seeds, same machine: the same returns the card recorded (distillation runs rely on it).
    assert result.returns.tolist() == card["returns"][:episodes]


def test_teachers_command_lists_them(capsys):
    assert main(["teachers", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"cartpole", "minatar-breakout"} <= {r["name"] for r in rows}
    assert len(list_teachers()) == len(list(TEACHERS_DIR.glob("*/card.json")))


def test_shipped_student_is_found_by_name_and_matches_its_card():
    from workbench.teachers import load, teacher_card

    student = load("minatar-breakout-net3")
    card = teacher_card("minatar-breakout-net3")
    assert student.n_params == card["student_params"] == 19_237
    assert card["compression"] < 0.04 and card["pct_of_teacher"] >= 95


def test_ship_copies_a_finished_run_without_its_resume_state(tmp_path, monkeypatch):
    from workbench import teachers
    from workbench.agents.ppo import ppo_config, train_ppo

    run = tmp_path / "run"
    train_ppo(ppo_config("smoke", "CartPole-v1", eval_episodes=30), run, progress_bar=False)
    assert (run / "checkpoint.safetensors").exists()
    monkeypatch.setattr(teachers, "TEACHERS_DIR", tmp_path / "shipped")
    dest = teachers.ship(run, "tiny-cartpole", how_trained="ppo smoke preset, in a test")
    assert sorted(p.name for p in dest.iterdir()) == sorted(teachers.SHIPPED_FILES)
    card = json.loads((dest / "card.json").read_text())
    assert card["how_trained"] == "ppo smoke preset, in a test" and card["source"] == "workbench train"
    assert load_policy(dest).n_params == card["params"]


def test_ship_refuses_an_unfinished_or_thinly_evaluated_run(tmp_path):
    from workbench import teachers
    from workbench.agents.ppo import ppo_config, train_ppo

    with pytest.raises(FileNotFoundError, match="finish the run"):
        teachers.ship(tmp_path, "x", how_trained="-")
    train_ppo(ppo_config("smoke", "CartPole-v1"), tmp_path / "run", progress_bar=False)  # 3 eval episodes
    with pytest.raises(ValueError, match="at least 30"):
        teachers.ship(tmp_path / "run", "x", how_trained="-")


IN_TRAINING = sorted(p.parent.name for p in IN_TRAINING_DIR.glob("*/checkpoint.json"))


@pytest.mark.parametrize("name", IN_TRAINING)
def test_a_teacher_in_training_resumes_where_it_stopped(name, tmp_path):
    """What a later session continues: the config the README's command rebuilds, and a checkpoint that loads
    strictly into that network and its optimizer at the step its curve reached."""
    import shutil

    import numpy as np
    import torch

    from workbench.agents.common import open_run
    from workbench.agents.ppo import ppo_agent, ppo_config, restore
    from workbench.envs import make_env

    saved = Run(IN_TRAINING_DIR / name).config
    assert "clip_coef" in saved, "only PPO teachers are trained across sessions"
    config = ppo_config(saved["preset"], saved["env_id"], seed=saved["seed"])
    shutil.copytree(IN_TRAINING_DIR / name, tmp_path / name)
    envs, spec = make_env(config.env_id, 1, config.seed, **config.env_settings)
    envs.close()
    run = open_run(tmp_path / name, config, spec, resume=True)  # raises where the config differs
    agent = ppo_agent(config, spec.obs_shape, spec.n_actions, seed=0)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.lr, eps=1e-5)
    step, update, wall = restore(run, agent, optimizer, np.random.default_rng(0))
    curve = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    assert step == update * config.n_envs * config.n_steps and 0 < curve[-1]["step"] <= step < config.total_steps
    assert wall > 0 and optimizer.state_dict()["state"], "the optimizer's moments travel with the weights"


def test_teachers_command_shows_what_is_still_training(capsys, monkeypatch, tmp_path):
    """An interrupted run in data/in_training is listed apart, with the steps it reached; none, no block."""
    from workbench import teachers
    from workbench.agents.ppo import ppo_config, train_ppo

    monkeypatch.setattr(teachers, "IN_TRAINING_DIR", tmp_path)
    assert main(["teachers"]) == 0
    assert "still training" not in capsys.readouterr().out and teachers.list_in_training().empty

    def interrupt(row):
        if row["step"] >= 2048:  # after the checkpoint at 1024
            raise KeyboardInterrupt

    config = ppo_config("smoke", "CartPole-v1", total_steps=4096, log_every=512, checkpoint_every=1024)
    with pytest.raises(KeyboardInterrupt):
        train_ppo(config, tmp_path / "cartpole-long", progress_bar=False, callback=interrupt)
    assert main(["teachers"]) == 0
    listed = capsys.readouterr().out.split("still training")[1]
    row = teachers.list_in_training().iloc[0]
    assert row["name"] == "cartpole-long" and "cartpole-long" in listed and 1024 <= row.env_steps < row.of == 4096


def test_the_frame_by_frame_student_disagrees_with_its_teacher_somewhere():
    """The frame-by-frame notebook opens on the shipped Asterix student: it keeps most of its teacher's return but
    not every choice, so 'next disagreement' and the confusion matrix have something to show."""
    import numpy as np

    from workbench.distill.engine import load_teacher
    from workbench.teachers import load, teacher_card
    from workbench.trace import record_trace

    card = teacher_card("minatar-asterix-tiny")
    student = load("minatar-asterix-tiny")
    teacher, _, spec = load_teacher(card["teacher"])
    assert student.n_params == card["student_params"] and card["compression"] < 0.02 and card["pct_of_teacher"] > 80
    trace = record_trace(teacher, student, spec, driver="student", seed=0, max_steps=300)
    differ = np.asarray(trace.teacher_out).argmax(-1) != np.asarray(trace.student_out).argmax(-1)
    assert 0.02 < differ.mean() < 0.5
