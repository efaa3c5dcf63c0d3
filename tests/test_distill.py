"""The distillation loop end to end on the shipped CartPole teacher (an MLP: seconds), CLI, resume, sweeps."""

import json
import os
import re
from dataclasses import replace as dataclasses_replace

import pandas as pd
import pytest

from workbench.cli import main
from workbench.distill.loop import beta_schedule, distill, distill_config

TEACHER = "cartpole"
CARD_KEYS = ["teacher_params", "student_params", "compression", "loss", "tau", "beta", "frames", "updates",
             "teacher_queries", "wall_seconds", "return_mean", "return_std", "teacher_return_mean",
             "pct_of_teacher", "agreement", "kl"]


def test_teacher_driven_distillation_learns_the_teacher(tmp_run):
    config = distill_config("smoke", TEACHER, student_net="net2", loss="kl", tau=1.0, total_steps=4_096,
                            updates_per_step=2.0, lr=3e-3, eval_episodes=5)
    card = distill(config, tmp_run, progress_bar=False)
    assert all(k in card for k in CARD_KEYS)
    assert json.loads((tmp_run / "config.json").read_text())["lr"] == 3e-3
    assert card["teacher_queries"] == card["env_steps"] == 4_096
    assert 0.05 < card["compression"] < 0.09
    rows = [json.loads(l) for l in (tmp_run / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[0], rows[-1]
    assert last["heldout/agreement"] > max(0.8, first["heldout/agreement"])
    assert card["agreement"] > 0.8


def test_teacher_evaluation_reads_a_matching_card_and_plays_otherwise():
    from workbench.distill.loop import load_teacher
    from workbench.evaluate import evaluate, evaluate_teacher

    teacher, card, spec = load_teacher("minatar-breakout")
    seed, settings = card["eval_seed"], spec.settings
    played = evaluate(teacher, spec.env_id, 30, seed, settings)
    read = evaluate_teacher(teacher, card, spec.env_id, 30, seed, settings)
    assert read.lengths is None and read.returns.tolist() == played.returns.tolist()
    rigged = {**card, "returns": [999.0] * 30}
    assert evaluate_teacher(teacher, rigged, spec.env_id, 30, seed, settings).mean == 999.0
    assert evaluate_teacher(teacher, rigged, spec.env_id, 30, seed + 1, settings).mean == pytest.approx(
        evaluate(teacher, spec.env_id, 30, seed + 1, settings).mean)  # other seeds: played
    other = {**settings, "sticky_action_prob": 0.0}
    assert evaluate_teacher(teacher, rigged, spec.env_id, 10, seed, other).mean < 999.0  # other count, settings


def test_student_driven_collection_lets_the_student_act(tmp_run):
    config = distill_config("smoke", TEACHER, beta="0", student_net="tiny")
    card = distill(config, tmp_run, progress_bar=False)
    rows = [json.loads(l) for l in (tmp_run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["charts/beta"] == 0.0 for r in rows) and card["teacher_queries"] == card["env_steps"]
    assert json.loads((tmp_run / "config.json").read_text())["lr"] == 1e-3  # an MLP student's default step size


def test_beta_schedules():
    assert beta_schedule("1")(0.5) == 1.0
    assert beta_schedule("linear:1:0")(0.25) == 0.75
    with pytest.raises(ValueError, match=r"beta \(--beta\) must"):
        beta_schedule("sometimes")
    with pytest.raises(ValueError, match="within"):
        beta_schedule("2")


def test_a_student_with_another_action_count_fails_before_training(tmp_run, monkeypatch):
    import dataclasses

    import workbench.distill.loop as loop

    real = loop.student_spec_for
    monkeypatch.setattr(loop, "student_spec_for", lambda c, t: dataclasses.replace(real(c, t), n_actions=6))
    with pytest.raises(ValueError, match="student has 6 actions but the teacher has 2"):
        distill(distill_config("smoke", TEACHER), tmp_run, progress_bar=False)
    assert not tmp_run.exists()


def test_cli_distill_prints_the_comparison(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["distill", "--teacher", TEACHER, "--preset-net", "net3", "--loss", "nll", "--preset", "smoke",
                 "--out", str(out), "--quiet"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["loss"] == "nll" and line["teacher_params"] > line["student_params"]


def test_interrupted_distillation_resumes(tmp_run):
    # Stopped past step 4,295, where the old resume seed (seed + 1_000_003 * step) left the 32-bit range that
    # MinAtar's (numpy RandomState) seeding accepts.
    config = distill_config("smoke", "minatar-breakout", total_steps=8_192, log_every=1_024, checkpoint_every=1_024,
                            eval_episodes=2)

    def stop(row):  # a row is logged before its step's checkpoint: this resumes from step 5,120
        if row["step"] >= 6_144:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(config, tmp_run, progress_bar=False, callback=stop)
    before = (tmp_run / "metrics.jsonl").read_text().splitlines()
    card = distill(config, tmp_run, resume=True, progress_bar=False)
    assert (tmp_run / "metrics.jsonl").read_text().splitlines()[: len(before)] == before
    assert card["env_steps"] == 8_192


def test_resume_seed_keeps_a_fresh_runs_seed_and_every_env_accepts_it():
    from workbench.agents.common import resume_seed
    from workbench.envs import make_env

    assert resume_seed(7, 0) == 7
    seeds = {resume_seed(7, step) for step in (1, 5_120, 10_000_000, 10**12)}
    assert len(seeds) == 4 and all(0 <= s < 2**30 for s in seeds)
    assert resume_seed(7, 5_120) == resume_seed(7, 5_120) != resume_seed(8, 5_120)
    # ale-py seeds its 8 envs seed .. seed + 7 as C ints: the Breakout run that resumed at update 1221 died here.
    envs, _ = make_env("ALE/Breakout-v5", n_envs=8, seed=0)
    for step in (1221, 1, 2, 3):
        envs.reset(seed=resume_seed(1, step))
    envs.close()


def _ray_or_skip():
    """A real local Ray cluster on 127.0.0.1. CI installs the ray extra (`make venv`), so there it must start; only a
    machine without the extra skips. The start waits as long as a busy 2-core machine needs (sweep.init_ray)."""
    if os.environ.get("CI"):
        import ray
    else:
        ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e .[ray]")
    from workbench.sweep import init_ray

    init_ray(num_cpus=2)
    return ray


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_sweep_writes_results_and_plot_and_skips_finished_runs(engine, tmp_path):
    ray = _ray_or_skip() if engine == "ray" else None
    from workbench.sweep import sweep

    kw = dict(teachers=[TEACHER], nets=["net3", "tiny"], losses=["kl"], seeds=[0], out=tmp_path, preset="smoke",
              engine=engine, num_cpus=2)
    df = sweep(**kw)
    assert len(df) == 2 and set(df.student_net) == {"net3", "tiny"}
    assert (tmp_path / "results.csv").exists()
    html = (tmp_path / "compression.html").read_text()
    assert "Pareto front" in html and "Rusu et al. 2016" in html and "plotly" in html
    stamp = {p: p.stat().st_mtime for p in tmp_path.glob("*/*/card.json")}
    again = sweep(**kw)
    assert {p: p.stat().st_mtime for p in tmp_path.glob("*/*/card.json")} == stamp
    pd.testing.assert_frame_equal(df, again)
    if ray:
        ray.shutdown()


def test_sweep_cli_takes_a_temperature_and_will_not_reuse_runs_of_another_recipe(tmp_path, capsys):
    from workbench.cli import main

    args = ["sweep", "--teacher", TEACHER, "--nets", "tiny", "--losses", "kl", "--seeds", "0", "--preset", "smoke",
            "--out", str(tmp_path)]
    assert main(args + ["--tau", "1"]) == 0
    results = pd.read_csv(tmp_path / "results.csv")
    assert results.tau.tolist() == [1.0] and results.ema.tolist() == [0.0]
    # Without --tau the teacher's default applies: 1 for this PPO teacher, so the finished run is this recipe's.
    assert main(args) == 0
    # A finished run at tau 1 is not a tau 0.01 result: the sweep says so instead of skipping it.
    assert main(args + ["--tau", "0.01"]) == 2
    assert re.search(r"tau 1\.0.*tau 0\.01.*own --out", capsys.readouterr().err)
    # and a finished run at tau 0.01 is not this teacher's default (1): the default is settled before comparing
    assert main(args[:-1] + [str(tmp_path / "t001"), "--tau", "0.01"]) == 0
    capsys.readouterr()
    assert main(args[:-1] + [str(tmp_path / "t001")]) == 2
    assert re.search(r"tau 0\.01.*tau 1\.0.*own --out", capsys.readouterr().err)
    # Nor is a run that saw another number of env steps (the folder name does not carry it either).
    steps = pd.read_csv(tmp_path / "results.csv").env_steps.item()
    assert main(args + ["--tau", "1", "--total-steps", str(2 * steps)]) == 2
    assert re.search(rf"total_steps {steps}\b.*total_steps {2 * steps}.*own --out", capsys.readouterr().err)
    assert main(args + ["--tau", "1"]) == 0, "the same recipe again reuses the finished run"
    # Nor a run with the weight average, even one written before config.json had the field (it ran without).
    config = tmp_path / "cartpole" / "tiny-kl-s0" / "config.json"
    for written in (config, config.with_name("card.json")):
        written.write_text(json.dumps({k: v for k, v in json.loads(written.read_text()).items() if k != "ema"}))
    assert main(args + ["--tau", "1", "--ema", "0.999"]) == 2
    assert re.search(r"ema 0\.0.*ema 0\.999.*own --out", capsys.readouterr().err)
    assert main(args + ["--tau", "1"]) == 0
    assert pd.read_csv(tmp_path / "results.csv").ema.tolist() == [0.0], "a card from before the average ran without it"
    averaged = [a if a != str(tmp_path) else str(tmp_path / "ema") for a in args]
    assert main(averaged + ["--tau", "1", "--ema", "0.999"]) == 0
    assert pd.read_csv(tmp_path / "ema" / "results.csv").ema.tolist() == [0.999]


def test_sweep_cli_gives_a_size_its_own_shape_and_any_config_field(tmp_path, capsys):
    from workbench.cli import main

    args = ["sweep", "--teacher", TEACHER, "--nets", "tiny", "net3", "--losses", "kl", "--seeds", "0", "--preset",
            "smoke", "--out", str(tmp_path)]
    # Bad shapes fail before any run starts, each naming the problem: too large for the preset, a net the sweep
    # does not run, a shape without its net, a field that has its own flag.
    for bad, says in ((["--layers", "tiny=:40,40"], r"layers :40,40 have .* of the tiny student's 1,142"),
                      (["--layers", "net1=:64"], r"layers given for net1, which this sweep does not run"),
                      (["--layers", ":22,22,22"], r"NET=CONV:HIDDEN, e\.g\. tiny=8:16"),
                      (["--set", "tau=1"], r"--set 'tau=1': expected FIELD=VALUE")):
        assert main(args + bad) == 2
        assert re.search(says, capsys.readouterr().err)
        assert not list(tmp_path.iterdir()), "a refused sweep writes nothing"
    assert main(args + ["--layers", "tiny=:22,22,22", "--set", "lr=3e-4"]) == 0
    results = pd.read_csv(tmp_path / "results.csv").set_index("student_net")
    assert results.layers.to_dict() == {"tiny": ":22,22,22", "net3": ":46,46"}
    assert results.student_params["tiny"] == 22 * 4 + 22 + 2 * (22 * 22 + 22) + 22 * 2 + 2
    run = tmp_path / "cartpole" / "tiny@x22_22_22-kl-s0"
    config = json.loads((run / "config.json").read_text())
    assert config["student_layers"] == ":22,22,22" and config["lr"] == 3e-4
    assert json.loads((tmp_path / "cartpole" / "net3-kl-s0" / "config.json").read_text())["lr"] == 3e-4


def test_ray_and_local_give_the_same_numbers(tmp_path):
    ray = _ray_or_skip()
    from workbench.sweep import sweep

    kw = dict(teachers=[TEACHER], nets=["net3"], losses=["mse"], seeds=[1], preset="smoke", num_cpus=1)
    a = sweep(out=tmp_path / "a", engine="local", **kw)
    b = sweep(out=tmp_path / "b", engine="ray", **kw)
    cols = ["return_mean", "agreement", "kl", "updates"]
    ray.shutdown()
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_distillation_from_an_atari_teacher(tmp_path):
    # The whole path on real ALE frames: a Nature-CNN teacher, Rusu's net3 student (4% of it), uint8 stacks.
    from workbench.agents.ppo import ppo_config, train_ppo

    train_ppo(ppo_config("smoke", "ALE/Pong-v5"), tmp_path / "teacher", progress_bar=False)
    config = distill_config("smoke", str(tmp_path / "teacher"), student_net="net3", loss="kl", eval_episodes=1)
    card = distill(config, tmp_path / "student", progress_bar=False)
    assert card["student_params"] == 61_174 and card["teacher_params"] == 1_687_206  # Rusu's, with Pong's 6 actions
    assert card["frames"] == 4 * card["env_steps"] == 4 * 1_024 and card["updates"] > 0
    assert 0.0 <= card["agreement"] <= 1.0 and card["return_n"] == 1
    # A Nature-CNN student steps at 2.5e-4 unless told (1e-3 killed a Pong student), and its config says so
    assert json.loads((tmp_path / "student" / "config.json").read_text())["lr"] == 2.5e-4


def test_weight_average_is_an_exponential_average_that_warms_up():
    import torch

    from workbench.distill.loop import WeightAverage

    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    average = WeightAverage(net, 0.5)
    expected = 0.0
    for n, w in enumerate([4.0, 8.0, 2.0, 6.0]):
        with torch.no_grad():
            net.weight.fill_(w)
        average.update(net)
        d = min(0.5, (1 + n) / (10 + n))  # 0.1, 0.18, then 0.5: the first updates count for more
        expected = d * expected + (1 - d) * w
        assert average.model.weight.item() == pytest.approx(expected)
    assert net.weight.item() == 6.0 and not average.model.weight.requires_grad
    with pytest.raises(ValueError, match="ema .* must be in"):
        WeightAverage(net, 1.0)


def test_averaged_student_is_saved_checkpointed_and_resumed(tmp_run):
    import numpy as np

    from workbench.runs import Run, load_policy

    config = distill_config("smoke", TEACHER, student_net="net2", loss="kl", tau=1.0, total_steps=4_096,
                            checkpoint_every=1_024, log_every=1_024, eval_episodes=3, ema=0.999)

    def stop(row):
        if row["step"] >= 3_072:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(config, tmp_run, progress_bar=False, callback=stop)
    arrays, state = Run(tmp_run).load_checkpoint()
    assert state["step"] == 2_048 and state["ema_updates"] == state["updates"] > 0
    averaged = {k[4:]: v for k, v in arrays.items() if k.startswith("ema.")}
    raw = {k[8:]: v for k, v in arrays.items() if k.startswith("student.")}
    assert averaged.keys() == raw.keys() and any(not np.array_equal(averaged[k], raw[k]) for k in raw)

    # Resumed with nothing left to do, the saved student is the checkpoint's average, not its raw weights.
    card = distill(dataclasses_replace(config, total_steps=2_048), tmp_run, resume=True, progress_bar=False)
    saved = {k: v.numpy() for k, v in load_policy(tmp_run).state_dict().items()}
    assert all(np.array_equal(saved[k], averaged[k]) for k in averaged)
    assert card["ema"] == 0.999 and card["ema_updates"] == card["updates"] == state["updates"]
    assert set(card["unaveraged"]) >= {"return_mean", "pct_of_teacher", "agreement", "kl"}

    rows = [json.loads(l) for l in (tmp_run / "metrics.jsonl").read_text().splitlines()]
    assert all("heldout/agreement_unaveraged" in r for r in rows)

    from workbench.results import weight_average_pairs
    from workbench.teachers import TEACHERS_DIR

    pair = weight_average_pairs([tmp_run]).iloc[0]
    assert (pair["pct_averaged"], pair["pct_unaveraged"]) == (card["pct_of_teacher"],
                                                              card["unaveraged"]["pct_of_teacher"])
    assert pair["gain"] == pytest.approx(pair["pct_averaged"] - pair["pct_unaveraged"])
    with pytest.raises(ValueError, match="not a finished run with the weight average.*--ema"):
        weight_average_pairs([TEACHERS_DIR / "cartpole"])


def test_weight_average_is_off_by_default_and_checked(tmp_path):
    card = distill(distill_config("smoke", TEACHER, student_net="tiny"), tmp_path / "plain", progress_bar=False)
    assert card["ema"] == 0.0 and "unaveraged" not in card
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match=r"ema \(--ema\) must be in \(0, 1\).*0 turns"):
            distill(distill_config("smoke", TEACHER, ema=bad), tmp_path / "bad", progress_bar=False)
        assert not (tmp_path / "bad").exists()


def test_a_run_written_before_a_config_field_existed_resumes(tmp_run):
    config = distill_config("smoke", TEACHER, student_net="tiny", total_steps=2_048, checkpoint_every=1_024)

    def stop(row):
        if row["step"] >= 1_536:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(config, tmp_run, progress_bar=False, callback=stop)
    saved = json.loads((tmp_run / "config.json").read_text())
    del saved["ema"]  # as the runs written before the weight average have it
    (tmp_run / "config.json").write_text(json.dumps(saved))
    assert distill(config, tmp_run, resume=True, progress_bar=False)["env_steps"] == 2_048
    with pytest.raises(ValueError, match=r"another recipe.*another ema"):
        distill(dataclasses_replace(config, ema=0.99, total_steps=4_096), tmp_run, resume=True, progress_bar=False)
