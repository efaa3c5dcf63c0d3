"""Dataset distillation: the four builders, the set file, and students trained from a set alone."""

import json

import numpy as np
import pytest
import torch

from workbench.cli import main
from workbench.config import ConfigError
from workbench.distill.dataset import (BUILDERS, DatasetConfig, DistilledSet, build_set, fit_set, k_center, load_set,
                                       save_set, student_spec)
from workbench.distill.engine import load_teacher
from workbench.evaluate import evaluate
from workbench.nets import build
from workbench.runs import CheckpointError

TINY = dict(teacher="cartpole", size=8, pool_size=400, experts=1, expert_updates=40, expert_every=10,
            iterations=3, match_steps=2, generations=2, population=4, fitness_episodes=1, fitness_max_steps=50,
            train_steps=20, device="cpu")


@pytest.mark.parametrize("builder", BUILDERS)
def test_each_builder_on_a_tiny_budget_writes_a_valid_set(builder, tmp_path):
    ds = build_set(DatasetConfig(builder=builder, **TINY), progress_bar=False)
    teacher, _, env = load_teacher("cartpole")
    assert ds.states.shape == (8, *env.obs_shape) and ds.labels.shape == (8, env.n_actions)
    assert torch.isfinite(ds.states).all() and torch.isfinite(ds.labels).all()
    assert ds.meta["builder"] == builder and ds.meta["teacher_queries"] >= 400 and ds.meta["build_seconds"] > 0
    if builder in ("random", "coreset"):  # real states of the teacher's play, labelled with its own outputs
        assert torch.allclose(ds.labels, teacher.logits(ds.states), atol=1e-5)
    if builder == "trajectory":  # synthetic states, kept in the pool's range, labelled by the teacher where they are
        assert torch.allclose(ds.labels, teacher.logits(ds.states), atol=1e-5)
        assert ds.meta["match_loss_first"] > 0
    if builder == "evolved":  # free labels (tau 1) and a fitness per generation
        assert ds.tau == 1.0 and len(ds.meta["generations"]) == 2
    path = save_set(tmp_path / f"{builder}.safetensors", ds)
    back = load_set(path)
    assert torch.equal(back.states, ds.states) and torch.equal(back.labels, ds.labels) and back.meta == ds.meta


def test_the_same_seed_builds_the_same_set_and_another_seed_another():
    a = build_set(DatasetConfig(builder="coreset", **TINY), progress_bar=False)
    b = build_set(DatasetConfig(builder="coreset", **TINY), progress_bar=False)
    c = build_set(DatasetConfig(builder="coreset", seed=1, **TINY), progress_bar=False)
    assert torch.equal(a.states, b.states) and not torch.equal(a.states, c.states)


def test_k_center_takes_the_point_farthest_from_those_chosen():
    # Two tight clusters and one outlier: after any first point, the outlier and the other cluster come next.
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [10.0, 0.0], [10.1, 0.0], [0.0, 50.0]])
    idx = k_center(x, 3, np.random.default_rng(0)).tolist()
    assert len(set(idx)) == 3 and 5 in idx
    assert {i // 3 for i in idx if i != 5} == {0, 1}  # one point of each cluster


def test_a_set_file_refuses_what_is_not_one(tmp_path):
    teacher, _, env = load_teacher("cartpole")
    from workbench.runs import save_policy

    save_policy(tmp_path / "policy.safetensors", teacher, env_id=env.env_id)
    with pytest.raises(CheckpointError, match="not a distilled set"):
        load_set(tmp_path / "policy.safetensors")
    torch.save({"states": torch.zeros(2)}, tmp_path / "set.safetensors")  # a pickle under the right name
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_set(tmp_path / "set.safetensors")
    ds = build_set(DatasetConfig(builder="random", **TINY), progress_bar=False)
    with pytest.raises(ValueError, match=r"\.safetensors"):
        save_set(tmp_path / "set.pt", ds)
    # A set whose arrays were changed to another shape than its env's is refused by its own header.
    bad = DistilledSet(ds.states[:, :2], ds.labels, ds.meta)
    save_set(tmp_path / "bad.safetensors", bad)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_set(tmp_path / "bad.safetensors")


def test_bad_dataset_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match="pool"):
        DatasetConfig(size=500, pool_size=100)
    with pytest.raises(ConfigError, match="population"):
        DatasetConfig(population=5)
    with pytest.raises(ConfigError, match="match_span"):
        DatasetConfig(expert_updates=50, expert_every=50, match_span=1)
    with pytest.raises(ConfigError, match="builder"):
        DatasetConfig(builder="magic")


def test_a_student_trained_on_a_set_plays_better_than_an_untrained_one():
    config = DatasetConfig(builder="coreset", teacher="cartpole", size=64, pool_size=2_000, device="cpu")
    ds = build_set(config, progress_bar=False)
    teacher, _, env = load_teacher("cartpole")
    untrained = build(student_spec(config, teacher), "pi", seed=0)
    before = evaluate(untrained, env.env_id, 10, 10_000).mean
    student = build(student_spec(config, teacher), "pi", seed=0)
    losses = fit_set(student, ds, config.train_steps, config.train_lr)
    after = evaluate(student, env.env_id, 10, 10_000).mean
    assert losses[-1] < losses[0] / 5
    assert after > before + 100, (before, after)


def test_the_cli_builds_a_set_and_distils_a_student_from_it_alone(tmp_path, capsys):
    out = tmp_path / "cartpole-16.safetensors"
    rc = main(["distill-dataset", "--teacher", "cartpole", "--size", "16", "--builder", "random", "--pool-size",
               "1000", "--out", str(out), "--quiet"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["size"] == 16
    assert main(["distill-dataset", "--teacher", "cartpole", "--out", str(out), "--quiet"]) == 2  # never overwritten
    assert "exists" in capsys.readouterr().err
    # No --teacher: the set's own. The student's card says where its knowledge came from.
    rc = main(["distill", "--from-dataset", str(out), "--eval-episodes", "3", "--out", str(tmp_path / "s"), "--quiet"])
    assert rc == 0
    card = json.loads((tmp_path / "s" / "card.json").read_text())
    assert card["dataset_size"] == 16 and card["dataset_builder"] == "random" and card["teacher"] == "cartpole"
    assert card["env_steps"] == 0 and card["teacher_queries"] == 0 and card["updates"] == 300
    assert card["dataset_teacher_queries"] >= 1000 and card["return_n"] == 3
    # A set for another game than the teacher's is refused before a run folder exists.
    rc = main(["distill", "--from-dataset", str(out), "--teacher", "minatar-breakout", "--out", str(tmp_path / "x")])
    assert rc == 2 and "CartPole" in capsys.readouterr().err and not (tmp_path / "x").exists()
    rc = main(["distill", "--out", str(tmp_path / "y")])
    assert rc == 2 and "--teacher is required" in capsys.readouterr().err


def test_the_set_and_size_figures_draw_what_they_are_given():
    import pandas as pd

    from workbench import plots

    ds = build_set(DatasetConfig(builder="random", **TINY), progress_bar=False)
    fig = plots.distilled_set_figure(ds, ["LEFT", "RIGHT"], n=8, cols=4)
    images = [t for t in fig.data if t.type == "image"]
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(images) == 8 and len(bars) == 8
    probs = torch.softmax(ds.labels / ds.tau, -1).numpy()
    assert np.allclose([b.y for b in bars], probs, atol=1e-6)  # each bar is that state's label, as probabilities
    rows = pd.DataFrame([{"game": g, "builder": b, "size": n, "seed": s, "pct_of_teacher": 10.0 * n ** 0.5 + s}
                         for g in ("a", "b") for b in ("random", "coreset") for n in (16, 64) for s in range(3)])
    fig = plots.dataset_size_figure(rows)
    lines = [t for t in fig.data if t.type == "scatter"]
    assert len(lines) == 4  # a line per builder and game
    first = lines[0]
    assert list(first.x) == [16, 64] and np.allclose(first.y, [41.0, 81.0])  # the mean over the seeds 0, 1, 2
    assert np.allclose(first.error_y.array, [1.0, 1.0]) and np.allclose(first.error_y.arrayminus, [1.0, 1.0])


def test_a_learned_minatar_state_is_drawn_in_shades():
    from workbench import plots

    obs = np.zeros((2, 10, 10))
    obs[0, 0, 0], obs[0, 0, 1], obs[1, 0, 1] = 1.0, 0.5, 0.5
    img = plots.soft_view(obs, "minatar", scale=1)
    assert img.shape == (10, 10, 3) and (img[1:, :] == 0).all()
    from workbench.trace import _PALETTE

    assert np.array_equal(img[0, 0], _PALETTE[0])  # a full channel is its colour, as agent_view draws it
    assert np.allclose(img[0, 1], 0.5 * _PALETTE[0] + 0.5 * _PALETTE[1], atol=1)  # halves of two channels: a blend


def test_the_shipped_sets_load_and_fit_their_teachers():
    from workbench.distill.dataset import DISTILLED_DIR, shipped_set

    games = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
    for game in games:
        ds = load_set(shipped_set(f"minatar-{game}", 64))
        _, _, env = load_teacher(f"minatar-{game}")
        assert ds.size == 64 and ds.meta["teacher"] == f"minatar-{game}" and ds.env.env_id == env.env_id
        assert tuple(ds.states.shape[1:]) == tuple(env.obs_shape) and ds.meta["train"]["steps"] == 300
    assert "minatar-breakout-64" in (DISTILLED_DIR / "README.md").read_text()
    with pytest.raises(FileNotFoundError, match="shipped: minatar-asterix-64"):
        shipped_set("cartpole", 64)
