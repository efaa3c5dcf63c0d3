"""Balanced multi-stage distillation: the balancing rules on hand-made deficits, the budget accounting, emulator
state restore for tail generation (MinAtar and ALE), a run with resume, and a domain of the user's own."""

import json

import numpy as np
import pytest
import torch

from workbench.config import ConfigError
from workbench.distill import balanced as B
from workbench.distill.engine import load_teacher
from workbench.distill.loop import distill, distill_config
from workbench.envs import make_env
from workbench.trace import SingleEnv


# -- the rules ----------------------------------------------------------------------------------------------------
def test_fixed_rule_is_half_natural_half_deficit():
    natural = np.array([0.7, 0.2, 0.1])
    assert np.allclose(B.fixed_mix(np.zeros(3), natural), natural)  # nothing falls short: the teacher's own mix
    mix = B.fixed_mix(np.array([0.0, 0.0, 0.4]), natural)
    assert np.allclose(mix, [0.35, 0.1, 0.55]) and np.isclose(mix.sum(), 1.0)


def test_adaptive_rule_moves_towards_the_domains_that_stay_behind():
    natural = np.array([0.6, 0.3, 0.1, 0.0])  # the teacher never takes the last action
    deficit = np.array([0.1, 0.1, 0.6, 0.0])
    mix1, logw = B.adaptive_mix(deficit, natural, None, eta=1.0)
    assert mix1[2] > natural[2] and mix1[0] < natural[0] and mix1[3] == 0 and np.isclose(mix1.sum(), 1.0)
    mix2, logw = B.adaptive_mix(deficit, natural, logw, eta=1.0)
    assert mix2[2] > mix1[2]  # it stays behind, so it keeps gaining
    assert np.all(mix2[:3] >= 0.2 * natural[:3] - 1e-12)  # a fifth of the natural mix is always kept
    caught_up, _ = B.adaptive_mix(np.array([0.3, 0.3, 0.0, 0.0]), natural, logw, eta=1.0)
    assert caught_up[2] < mix2[2]  # once it catches up it gives its share back
    same, _ = B.adaptive_mix(np.full(4, 0.2), natural, None)  # equal deficits: the natural mix
    assert np.allclose(same, natural)


def test_deficits_need_states_to_be_measured_on():
    report = {"states": [100, 3, 50], "recall": [0.9, 0.0, 0.5], "kl": [0.1, 2.0, 0.4]}
    assert np.allclose(B.deficits(report, "recall"), [0.1, np.nan, 0.5], equal_nan=True)
    assert np.allclose(B.deficits(report, "kl"), [0.1, np.nan, 0.4], equal_nan=True)
    # a domain with too few held-out states to measure keeps its natural share under both rules
    natural = np.array([0.6, 0.01, 0.39])
    deficit = B.deficits(report, "recall")
    assert np.isclose(B.fixed_mix(deficit, natural)[1], 0.01)
    mix, logw = B.adaptive_mix(deficit, natural, None, keep=0.0)
    assert np.isclose(logw[1], np.log(0.01)) and mix[2] > natural[2] and np.isclose(mix.sum(), 1.0)


def test_a_stage_spends_its_queries_exactly():
    head, tail = B.split_queries(1_000, np.array([0.5, 0.3, 0.15, 0.05]), np.array([False, False, True, True]))
    assert tail.tolist() == [0, 0, 150, 50] and head == 800
    assert B.stage_queries(10_000, 1_000, 4) == [2_250, 2_250, 2_250, 2_250]
    assert sum(B.stage_queries(10_003, 1_000, 3)) == 9_003


def test_domain_report_on_a_student_that_is_its_teacher():
    teacher, _, spec = load_teacher("minatar-breakout")
    held = B.heldout_domains(teacher, spec, 500, 123)
    r = B.domain_report(teacher, held)
    assert r["agreement"] == 1.0 and r["balanced_accuracy"] == 1.0 and r["mean_kl"] < 1e-5
    assert sum(r["states"]) == 500 and r["names"] == list(spec.action_meanings)


def test_sampler_follows_the_mix_across_domains():
    store = B.LabelledStates(1_000, (2,), np.float32, 3)
    dom = np.array([0] * 900 + [1] * 90 + [2] * 10)
    store.add(np.zeros((1_000, 2), np.float32), np.zeros((1_000, 3), np.float32), dom, B.PLAY, 0)
    cum = store.sampler(np.array([0.2, 0.3, 0.5]))
    got = np.bincount(store.domain[store.sample(cum, 20_000, np.random.default_rng(0))], minlength=3) / 20_000
    assert np.allclose(got, [0.2, 0.3, 0.5], atol=0.02)
    store.hardness[:900] = np.where(np.arange(900) < 100, 1.0, 0.0)  # within a head domain, the hard states first
    cum = store.sampler(np.array([1.0, 0.0, 0.0]), prioritise=np.array([True, False, False]))
    idx = store.sample(cum, 20_000, np.random.default_rng(1))
    assert np.mean(idx < 100) > 0.5  # 100 of 900 states, drawn over half the time


# -- the budget ---------------------------------------------------------------------------------------------------
def test_the_budget_refuses_a_query_past_it():
    teacher, _, spec = load_teacher("minatar-breakout")
    budget = B.QueryBudget(10)
    obs = torch.zeros((8, *spec.obs_shape))
    budget.label(teacher, obs)
    with pytest.raises(B.BudgetSpent, match="8 teacher queries asked with 2 of the budget of 10 left"):
        budget.label(teacher, obs)
    assert budget.spent == 8


# -- state restore ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id,settings", [("MinAtar/Seaquest-v1", {}), ("MinAtar/SpaceInvaders-v1", {}),
                                             ("MinAtar/Asterix-v1", {}), ("ALE/Breakout-v5", {}),
                                             ("ALE/Breakout-v5", {"conventions": "sb3"})])
def test_a_stored_state_plays_on_as_the_original(env_id, settings):
    _, spec = make_env(env_id, 1, 0, **settings)
    env, rng = SingleEnv(spec, 3), np.random.default_rng(0)
    env.reset()
    for _ in range(30):
        env.step(int(rng.integers(spec.n_actions)))
    saved = env.state_bytes()
    actions = rng.integers(0, spec.n_actions, 200 if settings else 40)  # through a lost life, for SB3's wrappers

    def play(e):
        frames = []
        for a in actions:
            obs, _, done = e.step(int(a))
            frames.append(obs.copy())
            if done:
                break
        return frames

    first = play(env)
    other = SingleEnv(spec, 99)  # another seed: everything that matters comes from the bytes
    other.reset()
    other.load_state_bytes(saved)
    second = play(other)
    assert len(first) == len(second) and all(np.array_equal(a, b) for a, b in zip(first, second))
    with pytest.raises(ValueError, match="not a saved"):
        other.load_state_bytes(b"junk" + saved[4:])


def test_the_tail_bank_keeps_states_through_a_checkpoint():
    _, spec = make_env("MinAtar/Breakout-v1", 1, 0)
    env = SingleEnv(spec, 0)
    env.reset()
    bank, rng = B.TailBank(3, 4), np.random.default_rng(0)
    for k in range(10):
        bank.offer(k % 2, env, rng)
        env.step(1)
    assert bank.sizes().tolist() == [4, 4, 0] and bank.seen.tolist() == [5, 5, 0]
    again = B.TailBank(3, 4)
    again.load_state_arrays(bank.state_arrays())
    assert again.states == bank.states and again.seen.tolist() == bank.seen.tolist()


# -- runs ---------------------------------------------------------------------------------------------------------
def small(**kw):
    base = dict(method="balanced", total_steps=6_000, heldout_size=500, learning_starts=500, n_envs=4,
                batch_size=64, memory_size=10_000, balance_stages=3, balance_tail=0.2, balance_rollout=8,
                eval_episodes=2, log_every=1_000, student_net="tiny")
    return distill_config("smoke", "minatar-seaquest", **{**base, **kw})


def test_a_balanced_run_spends_its_budget_to_the_query_and_resumes(tmp_path):
    class Stop(Exception):
        pass

    def stop_in_stage_two(row):
        if row["stage"] == 2:
            raise Stop

    with pytest.raises(Stop):
        distill(small(), tmp_path / "run", progress_bar=False, callback=stop_in_stage_two)
    saved = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    assert len(saved["stages"]) == 2  # stages 0 and 1 finished and were checkpointed
    card = distill(small(), tmp_path / "run", resume=True, progress_bar=False)
    b = card["balanced"]
    assert card["teacher_queries"] == 6_000 == card["budget"]  # never more than the budget, and all of it spent
    assert sum(b["queries_by_source"].values()) == 6_000
    assert [h["stage"] for h in b["stages"]] == [0, 1, 2] and b["stages"][0]["mix"] is None
    later = b["stages"][1:]
    assert all(np.isclose(sum(h["mix"]), 1.0) for h in later)
    assert all(h["active"] > 0 for h in later)  # head data chosen by the student's play
    assert b["queries_by_source"]["generated"] > 0 and later[0]["tail"]  # and the teacher made tail data
    tail = B.load_tail_examples(tmp_path / "run")
    assert len(tail["obs"]) > 0 and set(tail["stage"].tolist()) <= {1, 2} and tail["names"] == b["names"]
    table = B.stage_table(card)
    assert len(table) == 3 * len(b["names"]) and {"mix", "deficit", "recall_after"} <= set(table.columns)
    assert card["updates"] > 0 and card["return_n"] == 2


def test_same_seed_same_numbers(tmp_path):
    a = distill(small(total_steps=3_000, balance_stages=2), tmp_path / "a", progress_bar=False)
    b = distill(small(total_steps=3_000, balance_stages=2), tmp_path / "b", progress_bar=False)
    assert a["balanced"]["stages"] == b["balanced"]["stages"] and a["return_mean"] == b["return_mean"]


def test_a_domain_of_ones_own(tmp_path):
    # MinAtar Seaquest's oxygen gauge (channel 7): low oxygen, where the teacher must surface, as its own domain.
    B.register_domain("low_oxygen", of=lambda obs, t: (obs[:, 7].sum((1, 2)) < 4).astype(np.int64),
                      count=lambda spec: 2, names=lambda spec: ["enough", "low"])
    try:
        card = distill(small(balance_domain="low_oxygen", total_steps=3_000, balance_stages=2), tmp_path / "o",
                       progress_bar=False)
        assert card["balanced"]["names"] == ["enough", "low"] and card["teacher_queries"] == 3_000
    finally:
        del B.DOMAINS["low_oxygen"]
    with pytest.raises(ConfigError, match="balance_domain .* 'low_oxygen' is not a known domain"):
        small(balance_domain="low_oxygen")


def test_multitask_balancing_moves_queries_and_updates_to_the_games_behind(tmp_path):
    from workbench.distill.multitask import distill_multitask, multitask_config

    config = multitask_config("smoke", ["minatar-breakout", "minatar-seaquest"], steps_per_game=3_072,
                              balance="adaptive", balance_stages=3)
    card = distill_multitask(config, tmp_path / "mt", progress_bar=False)
    stages = card["balance"]["stages"]
    assert card["teacher_queries"] == 6_144 == sum(g["teacher_queries"] for g in card["per_game"].values())
    assert [s["stage"] for s in stages] == [0, 1, 2] and stages[0]["mix"] == [0.5, 0.5]
    for s in stages[1:]:  # each later stage leans towards the game with the larger deficit
        assert np.argmax(s["mix"]) == np.argmax(s["deficit"]) and np.isclose(sum(s["mix"]), 1.0)
    assert card["worst_agreement"] <= card["balanced_agreement"]


def test_the_distill_form_offers_the_balanced_method(tmp_path):
    from workbench.widgets import DistillForm

    form = DistillForm(out_dir=str(tmp_path), preset="smoke", interactive=False, teacher="minatar-breakout",
                       student_net="tiny", method="balanced", total_steps=3_000)
    card = form.run()
    assert form.out.name == "tiny-kl-balanced-s0" and card["method"] == "balanced"
    assert card["teacher_queries"] == 3_000 and len(card["balanced"]["stages"]) == 4
