"""Proximal policy distillation (the engine's loss "ppd") and runs that stop at a target return."""

import dataclasses
import json

import pytest
import torch

from workbench.cli import main
from workbench.config import ConfigError
from workbench.distill.loop import distill, distill_config
from workbench.distill.losses import kl_per_state, ppd


def test_the_ppd_term_weights_each_states_kl_by_the_ratio_held_above_one_minus_clip():
    t = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    s = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]], requires_grad=True)
    kls = kl_per_state(s, t, 1.0)
    assert kls[0] > 0 and kls[1] > 0 and kls[2].abs() < 1e-7  # KL(teacher || student): 0 where they agree
    ratio = torch.tensor([0.5, 1.5, 1.0], requires_grad=True)
    value = ppd(s, t, ratio, clip=0.2)
    # A ratio below 1 - clip counts as 1 - clip (0.8); above it, as itself (1.5): no upper clip.
    assert torch.allclose(value, (0.8 * kls[0] + 1.5 * kls[1] + 1.0 * kls[2]) / 3)
    value.backward()
    assert ratio.grad[0] == 0 and ratio.grad[1] > 0  # the held weight has no gradient, the free one has
    # tau sharpens the teacher: at a low temperature the teacher is its argmax.
    assert torch.allclose(kl_per_state(s, t, 0.01)[0], -torch.log_softmax(s, -1)[0, 0], atol=1e-4)


def test_ppd_distils_resumes_and_refuses_a_teacher_driven_beta(tmp_path):
    config = distill_config("smoke", "cartpole", loss="ppd", student_net="tiny", total_steps=1_024, ppd_rollout=32,
                            batch_size=64, log_every=256, checkpoint_every=256)
    assert config.beta == "0"
    card = distill(config, tmp_path / "run", progress_bar=False)
    assert card["loss"] == "ppd" and card["env_steps"] == 1_024 and card["net"]["value_head"]
    assert card["teacher_queries"] == 1_024 and card["updates"] == 8 * 4 * 2  # 8 rollouts x 4 epochs x 2 minibatches
    # --resume with more steps goes on from the checkpoint: the metrics continue, nothing is redone.
    more = distill(dataclasses.replace(config, total_steps=2_048), tmp_path / "run", resume=True, progress_bar=False)
    assert more["env_steps"] == 2_048 and more["updates"] == 2 * card["updates"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 2_048 and len(steps) == len(set(steps))
    with pytest.raises(ConfigError, match="beta"):
        distill_config("smoke", "cartpole", loss="ppd", beta="1")
    rc = main(["distill", "--teacher", "cartpole", "--loss", "ppd", "--beta", "0.5", "--out", str(tmp_path / "x")])
    assert rc == 2 and not (tmp_path / "x").exists()


def test_a_run_stops_at_the_first_evaluation_that_reaches_its_target(tmp_path):
    base = dict(student_net="tiny", beta="0", total_steps=4_096, eval_every=512, eval_episodes=3, eval_seed=0,
                log_every=512)
    reached = distill(distill_config("smoke", "cartpole", target_return=0.0, **base), tmp_path / "a",
                      progress_bar=False)
    assert reached["env_steps"] == 512 and reached["target_reached"]["env_steps"] == 512
    assert reached["target_reached"]["train_seconds"] > 0
    missed = distill(distill_config("smoke", "cartpole", target_return=1e9, **base), tmp_path / "b",
                     progress_bar=False)
    assert missed["env_steps"] == 4_096 and missed["target_reached"] is None
