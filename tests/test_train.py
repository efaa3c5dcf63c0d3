"""Every training path end to end on the smoke preset, in-process; repeatability; resume."""

import json
from dataclasses import replace

import pytest

from workbench.agents.dqn import dqn_config, train_dqn
from workbench.agents.ppo import ppo_config, train_ppo
from workbench.runs import Run, load_policy

TRAIN = {"dqn": (dqn_config, train_dqn), "ppo": (ppo_config, train_ppo)}
ENVS = ["CartPole-v1", "MinAtar/Breakout-v1", "ALE/Pong-v5"]


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
@pytest.mark.parametrize("env_id", ENVS)
def test_smoke_training_writes_a_complete_run(algo, env_id, tmp_run):
    make, train = TRAIN[algo]
    card = train(make("smoke", env_id), tmp_run, progress_bar=False)
    for name in ("config.json", "metrics.jsonl", "model.safetensors", "card.json", "checkpoint.json"):
        assert (tmp_run / name).exists(), name
    policy = load_policy(tmp_run)
    assert policy.kind == ("q" if algo == "dqn" else "pi")
    assert card["params"] == policy.n_params and card["env_id"] == env_id and card["algo"] == algo
    assert card["return_n"] >= 1 and card["env_steps"] >= make("smoke", env_id).total_steps // 2
    rows = [json.loads(line) for line in (tmp_run / "metrics.jsonl").read_text().splitlines()]
    assert rows and all("charts/SPS" in r for r in rows)


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_same_seed_same_metrics(algo, tmp_path):
    make, train = TRAIN[algo]
    cards, metrics = [], []
    for i in range(2):
        cards.append(train(make("smoke", "MinAtar/Breakout-v1", seed=3), tmp_path / str(i), progress_bar=False))
        rows = [json.loads(l) for l in (tmp_path / str(i) / "metrics.jsonl").read_text().splitlines()]
        metrics.append([{k: v for k, v in r.items() if k.startswith("losses/") or k == "charts/episodic_return"}
                        for r in rows])
    assert metrics[0] == metrics[1]
    assert cards[0]["return_mean"] == cards[1]["return_mean"]


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_interrupted_training_resumes_and_keeps_every_metric_line(algo, tmp_run):
    make, train = TRAIN[algo]
    config = make("smoke", "CartPole-v1", total_steps=4096, log_every=512, checkpoint_every=1024)

    def interrupt(row):
        if row["step"] >= 2048:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_run, progress_bar=False, callback=interrupt)
    before = (tmp_run / "metrics.jsonl").read_text().splitlines()
    assert not (tmp_run / "card.json").exists() and (tmp_run / "checkpoint.json").exists()
    with pytest.raises(FileExistsError, match="--resume"):
        train(config, tmp_run, progress_bar=False)
    with pytest.raises(ValueError, match=r"another recipe.*another lr"):
        train(replace(config, lr=config.lr * 2), tmp_run, resume=True, progress_bar=False)
    # How often it checkpoints may change (a session about to end checkpoints more often); what it learns may not.
    card = train(replace(config, checkpoint_every=512), tmp_run, resume=True, progress_bar=False)
    assert Run(tmp_run).config["checkpoint_every"] == 512
    after = (tmp_run / "metrics.jsonl").read_text().splitlines()
    assert after[: len(before)] == before
    resumed = [json.loads(l) for l in after[len(before):]]
    assert resumed and all(r["segment"] == 1 for r in resumed)
    assert resumed[0]["step"] > 1024 and card["env_steps"] >= 4096 - 512


def test_life_loss_ends_the_learners_episode_but_not_the_game():
    """Breakout with random play loses lives long before a game ends: each loss is a learner's episode end."""
    import numpy as np

    from workbench.agents.ppo import learner_done
    from workbench.envs import make_env

    envs, _ = make_env("ALE/Breakout-v5", n_envs=2, seed=0)
    _, info = envs.reset(seed=0)
    lives = info["lives"].copy()
    rng = np.random.default_rng(0)
    learner_ends = game_ends = 0
    for _ in range(3000):
        _, _, term, trunc, info = envs.step(rng.integers(0, 4, size=2))
        done, lives = learner_done(term, trunc, lives, info)
        plain, _ = learner_done(term, trunc, None, info)
        assert (done >= plain).all(), "every game end stays an episode end"
        learner_ends, game_ends = learner_ends + done.sum(), game_ends + plain.sum()
    envs.close()
    assert game_ends >= 1 and learner_ends >= 4 * game_ends  # five lives a game


def test_life_loss_terminal_on_an_env_without_lives_names_the_fix(tmp_run):
    config = ppo_config("smoke", "MinAtar/Breakout-v1", life_loss_terminal=True)
    with pytest.raises(ValueError, match="life_loss_terminal=false"):
        train_ppo(config, tmp_run, progress_bar=False)


def test_classic_control_ppo_trains_cleanrls_agent_and_ships_the_actor_alone(tmp_run):
    """Classic control trains cleanrl's ppo.py agent (tanh, a critic of its own, orthogonal init); the resume
    checkpoint keeps the critic, the shipped policy is the actor alone with the checkpoint's actor weights."""
    import torch

    config = ppo_config("smoke", "Acrobot-v1", seed=0)
    assert (config.activation, config.critic, config.init) == ("tanh", "separate", "orthogonal")
    assert ppo_config("smoke", "MinAtar/Breakout-v1").critic == "head"  # the image agents keep their shared trunk
    train_ppo(config, tmp_run, progress_bar=False)
    policy = load_policy(tmp_run / "model.safetensors")
    assert policy.spec.activation == "tanh" and not policy.spec.value_head and policy.spec.critic == "head"
    arrays, _ = Run(tmp_run).load_checkpoint()
    assert any(k.startswith("agent.value.0.") for k in arrays), "the critic's own trunk is in the resume checkpoint"
    for k, v in policy.state_dict().items():
        assert torch.equal(v, torch.from_numpy(arrays[f"agent.{k}"].copy()))
