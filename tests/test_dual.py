"""Dual policy distillation: the weights of the two readings, and a resumable run of two learners."""

import json

import numpy as np
import pytest
import torch

from workbench.cli import main
from workbench.config import ConfigError
from workbench.distill.dual import DualConfig, distill_dual, distill_weights


def test_the_papers_weights_grow_where_the_peer_is_better_and_the_codes_where_the_learner_is():
    v_self = torch.tensor([0.0, 0.0, 0.0, 0.0])
    v_peer = torch.tensor([2.0, 0.0, -2.0, 100.0])
    w, raw = distill_weights(v_self, v_peer, beta=0.5, w_min=0.01, w_max=100.0)
    # exp(0.5 x (V_peer - V_self)): e, 1, 1/e, and exp(50) clipped to 100.
    assert torch.allclose(raw, torch.tensor([2.718282, 1.0, 0.367879, 100.0]), atol=1e-5)
    assert torch.isclose(w.sum(), torch.tensor(1.0)) and torch.allclose(w, raw / raw.sum())
    assert w[0] > w[1] > w[2] and w.argmax() == 3
    w_code, raw_code = distill_weights(v_self, v_peer, beta=0.5, w_min=0.01, w_max=100.0, weighting="code")
    # The code's reading reverses the sign: the state where the peer is far better falls to the lower clip.
    assert torch.allclose(raw_code, torch.tensor([0.367879, 1.0, 2.718282, 0.01]), atol=1e-5)
    assert w_code[2] > w_code[1] > w_code[0] > w_code[3]
    # Equal values weigh every state alike, whatever the scale.
    w_eq, _ = distill_weights(torch.ones(5), torch.ones(5), beta=3.0, w_min=0.01, w_max=100.0)
    assert torch.allclose(w_eq, torch.full((5,), 0.2))
    with pytest.raises(ValueError, match="weighting"):
        distill_weights(v_self, v_peer, 0.5, 0.01, 100.0, weighting="both")


def test_bad_dual_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match="w_min"):
        DualConfig(w_min=5.0, w_max=1.0)
    with pytest.raises(ConfigError, match="memory"):
        DualConfig(batch=512, memory=100)
    with pytest.raises(ConfigError, match="weighting"):
        DualConfig(weighting="sideways")
    with pytest.raises(ConfigError, match="not PPO config fields"):
        DualConfig(ppo={"learning_rate": 1e-3})


def test_two_learners_distil_from_each_other_and_resume(tmp_path):
    base = dict(env_id="CartPole-v1", preset="smoke", every=1, batch=128, memory=1024, eval_episodes=2,
                checkpoint_every=512, log_every=512, width_b=0.5, device="cpu")
    out = tmp_path / "pair"
    first = distill_dual(DualConfig(total_steps=1024, **base), out, progress_bar=False)
    assert first["distill_steps"] == 2 and first["a"]["env_steps"] == 1024
    assert first["b"]["params"] < first["a"]["params"]  # a big and a small learner
    for n in ("a", "b"):  # each learner is an ordinary run folder with its own card and curve
        card = json.loads((out / n / "card.json").read_text())
        assert card["algo"] == "ppo" and card["dual"] == str(out) and (out / n / "model.safetensors").exists()
        assert 0.0 <= first[n]["taught_share"] <= 1.0 and first[n]["w_mean"] > 0
    weights = first["weights_over_time"]
    assert [w["learner"] for w in weights] == ["a", "b", "a", "b"] and all(0.01 <= w["w_min"] <= w["w_max"] <= 100
                                                                          for w in weights)
    more = distill_dual(DualConfig(total_steps=2048, **base), out, resume=True, progress_bar=False)
    assert more["a"]["env_steps"] == 2048 and more["distill_steps"] == 4
    assert more["weights_over_time"][:4] == weights  # the history before the stop is kept, not redone
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 2048 and len(set(steps)) == len(steps)
    # Another recipe on --resume is refused by name; so is a finished folder without --resume.
    rc = main(["distill-dual", "--env", "CartPole-v1", "--preset", "smoke", "--weighting", "code", "--out", str(out),
               "--resume", "--quiet"])
    assert rc == 2


def test_every_zero_is_two_independent_learners(tmp_path):
    card = distill_dual(DualConfig(env_id="CartPole-v1", preset="smoke", every=0, total_steps=1024, memory=1024,
                                   batch=128, eval_episodes=2, device="cpu"), tmp_path / "pair", progress_bar=False)
    assert card["distill_steps"] == 0 and card["a"]["taught_share"] is None


def test_where_each_learner_teaches_comes_from_both_learners_values(tmp_path):
    from workbench.distill.dual import load_agents, teaching_states

    out = tmp_path / "pair"
    distill_dual(DualConfig(env_id="CartPole-v1", preset="smoke", every=1, total_steps=1024, memory=1024, batch=128,
                            eval_episodes=2, width_b=0.5, device="cpu"), out, progress_bar=False)
    (a, b), spec = load_agents(out)
    assert a.value is not None and b.n_params < a.n_params  # value heads back, at each learner's own width
    where = teaching_states(out, n_states=200, top=5, seed=0)
    for direction, (v_t, v_s) in (("a->b", ("value_a", "value_b")), ("b->a", ("value_b", "value_a"))):
        d = where[direction]
        assert d["states"].shape == (5, *spec.obs_shape) and d["probs_a"].shape == (5, spec.n_actions)
        # Each weight is exp(beta (V_teacher - V_student)) at the pair's beta, and they come largest first.
        assert np.allclose(d["weight"], np.exp(0.5 * (d[v_t] - d[v_s])), rtol=1e-4)
        assert (np.diff(d["weight"]) <= 1e-6).all()
        obs = torch.as_tensor(d["states"])
        assert np.allclose(d["value_a"], a.logits_and_value(obs)[1].detach().numpy(), atol=1e-5)
