"""The `workbench` command, in-process through main() and once as the installed console script."""

import json
import subprocess
from pathlib import Path

import pytest

from workbench.cli import main

BIN = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "workbench"


def test_doctor_reports_every_check_and_exits_zero(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in ("torch", "ale-py ROMs", "MinAtar", "OpenCV", "plotly", "papermill", "Jupyter kernel"):
        assert f"[ok] {name}" in out


def test_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "cp"
    assert main(["train", "--env", "CartPole-v1", "--algo", "ppo", "--preset", "smoke", "--out", str(out), "--quiet"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["env_id"] == "CartPole-v1" and (out / "card.json").exists()
    assert main(["evaluate", str(out), "--episodes", "4", "--seed", "5"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["return_n"] == 4 and result["return_mean"] > 0 and "return_std" in result


def test_evaluate_with_epsilon_takes_random_actions(capsys):
    cartpole = str(Path(__file__).resolve().parent.parent / "data" / "teachers" / "cartpole")
    assert main(["evaluate", cartpole, "--episodes", "4", "--epsilon", "0"]) == 0
    greedy = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["evaluate", cartpole, "--episodes", "4", "--epsilon", "1"]) == 0
    random = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert greedy["return_mean"] == 500.0 and random["epsilon"] == 1.0 and random["return_mean"] < 100
    assert main(["evaluate", cartpole, "--epsilon", "5"]) == 2
    assert "not a probability" in capsys.readouterr().err


def test_train_set_overrides_any_config_field_and_the_run_records_it(tmp_path, capsys):
    out = tmp_path / "cp"
    assert main(["train", "--env", "CartPole-v1", "--algo", "ppo", "--preset", "smoke", "--out", str(out), "--quiet",
                 "--set", "lr=1e-3", "--set", "anneal_lr=false", "--set", "n_steps=64"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["lr"] == 0.001 and config["anneal_lr"] is False and config["n_steps"] == 64
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {m["charts/learning_rate"] for m in metrics} == {0.001}  # no annealing
    for bad, says in ((["--set", "lr"], "FIELD=VALUE"), (["--set", "nope=1"], "FIELD one of"),
                      (["--set", "n_steps=6.5"], "n_steps takes a whole number"), (["--seed", "1", "--set", "seed=3"], "seed given twice"),
                      (["--buffer-size", "10"], "--buffer-size: not a setting of --algo ppo")):
        assert main(["train", "--env", "CartPole-v1", "--preset", "smoke", "--out", str(tmp_path / "x"), *bad]) == 2
        assert says in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_distill_set_overrides_the_fields_without_a_flag_of_their_own(tmp_path, capsys):
    def run(out, *extra):
        return main(["distill", "--teacher", "cartpole", "--preset", "smoke", "--preset-net", "tiny", "--quiet",
                     "--out", str(tmp_path / out), *extra])

    assert run("plain") == 0
    assert run("set", "--set", "lr=3e-4", "--set", "updates_per_step=2", "--set", "batch_size=32") == 0
    config = json.loads((tmp_path / "set" / "config.json").read_text())
    assert config["lr"] == 3e-4 and config["updates_per_step"] == 2.0 and config["batch_size"] == 32
    updates = {out: json.loads((tmp_path / out / "metrics.jsonl").read_text().splitlines()[-1])["charts/updates"]
               for out in ("plain", "set")}
    assert updates["set"] == 2 * updates["plain"] > 0  # the smoke preset's one update a step, doubled
    capsys.readouterr()
    for bad, says in ((["--set", "lr=fast"], "lr takes a number"), (["--set", "teacher=x"], "FIELD one of"),
                      (["--tau", "1", "--set", "tau=2"], "tau given twice"),
                      (["--set", "batch_size=0.5"], "batch_size takes a whole number")):
        assert run("bad", *bad) == 2
        assert says in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_distill_layers_give_the_student_another_shape_at_the_preset_size(tmp_path, capsys):
    def run(out, *extra):
        return main(["distill", "--teacher", "cartpole", "--preset", "smoke", "--quiet", "--out", str(tmp_path / out),
                     *extra])

    # cartpole's tiny student is 30,30 hidden units (1,142 params); three layers of 22 come within 15% of it
    assert run("deep", "--preset-net", "tiny", "--layers", ":22,22,22") == 0
    card = json.loads((tmp_path / "deep" / "card.json").read_text())
    assert card["net"]["hidden"] == [22, 22, 22] and card["student_net"] == "tiny"
    assert card["student_params"] == (4 * 22 + 22) + 2 * (22 * 22 + 22) + (22 * 2 + 2)
    assert json.loads((tmp_path / "deep" / "config.json").read_text())["student_layers"] == ":22,22,22"
    assert run("any", "--layers", ":40") == 0  # without a preset the layers take any size
    assert json.loads((tmp_path / "any" / "card.json").read_text())["student_params"] == 4 * 40 + 40 + 40 * 2 + 2
    assert run("wide", "--width", "0.125") == 0  # 32,32 units: the width, not the default net3 preset, sizes it
    card = json.loads((tmp_path / "wide" / "card.json").read_text())
    assert card["net"]["hidden"] == [32, 32] and card["student_net"] is None
    capsys.readouterr()
    for bad, says in ((["--layers", "22x22"], "layers must read CONV:HIDDEN"),
                      (["--preset-net", "tiny", "--layers", ":40"], "25% of the tiny student's 1,142 (layers :30,30)"),
                      (["--width", "0.1", "--layers", ":40"], "not --width with the others")):
        assert run("bad", *bad) == 2
        assert says in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_env_threads_are_asked_once_recorded_and_the_environment_restored(tmp_path, capsys, monkeypatch):
    import os

    monkeypatch.delenv("WORKBENCH_ENV_THREADS", raising=False)
    with pytest.raises(SystemExit):
        main(["--env-threads", "0", "doctor"])
    assert "--env-threads: 0: give at least 1" in capsys.readouterr().err
    out = tmp_path / "run"
    assert main(["--env-threads", "3", "train", "--env", "CartPole-v1", "--algo", "ppo", "--preset", "smoke",
                 "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "card.json").read_text())["machine"]["env_threads"] == 3
    assert "WORKBENCH_ENV_THREADS" not in os.environ


def test_train_refuses_to_overwrite_a_finished_run(tmp_path, capsys):
    out = tmp_path / "cp"
    args = ["train", "--env", "CartPole-v1", "--algo", "dqn", "--preset", "smoke", "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert main(args) == 2
    assert "already holds a finished run" in capsys.readouterr().err


def test_bad_input_gets_a_clear_error_and_exit_2(tmp_path, capsys):
    assert main(["train", "--env", "Pong", "--out", str(tmp_path / "x"), "--preset", "smoke"]) == 2
    assert "Supported env ids" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"\x80\x04garbage")
    assert main(["evaluate", str(tmp_path / "bad")]) == 2
    assert "never unpickles" in capsys.readouterr().err


@pytest.mark.skipif(not BIN.exists(), reason="console script not installed in .venv")
def test_console_script_bench_quick_prints_the_ratios(tmp_path):
    saved = tmp_path / "figures" / "bench.json"
    out = subprocess.run([str(BIN), "bench", "--quick", "--out", str(saved)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    bench = json.loads(out.stdout)
    assert json.loads(saved.read_text()) == bench  # written section by section, the last time whole
    for env_id in ("MinAtar/Breakout-v1", "ALE/Pong-v5"):
        assert bench["collector"][env_id]["ratio"] > 0
    assert 0.99 < bench["replay"]["replay_bytes_ratio"] <= 1.1
    assert bench["training"]["MinAtar/Breakout-v1"]["ppo_env_steps_per_s"] > 0
    for n in ("8", "256"):  # worker processes against one process, at a few envs and at many
        assert bench["vector_env"][n]["processes_over_sync"] > 0 and bench["vector_env"][n]["n_envs"] == int(n)
    ppo = bench["vector_env"]["ppo_256_envs"]  # the same with a PPO teacher learning from them (2+ cores)
    assert "skipped" in ppo or (ppo["ratio"] > 0 and ppo["workers"] >= 2)
    vs_cleanrl = bench["atari_ppo_vs_cleanrl"]
    assert vs_cleanrl["workbench_steps_per_s"] > 0 and vs_cleanrl["cleanrl_style_steps_per_s"] > 0
    assert vs_cleanrl["ratio"] > 0 and vs_cleanrl["n_envs"] == 8 and vs_cleanrl["n_steps"] == 128


def test_a_bench_cut_short_keeps_the_sections_it_measured(tmp_path):
    from workbench.bench import run_bench
    from workbench.runs import atomic_write_json

    saved = tmp_path / "bench.json"

    def save_then_stop(figures):
        atomic_write_json(saved, figures)
        if "collector" in figures:  # as a time limit or Ctrl-C would, after the first section
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_bench(quick=True, device="cpu", on_section=save_then_stop)
    kept = json.loads(saved.read_text())
    assert sorted(kept) == ["collector", "machine"]
    assert kept["collector"]["MinAtar/Breakout-v1"]["ratio"] > 0 and kept["machine"]["device"] == "cpu"
