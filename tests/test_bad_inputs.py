"""Every bad input a user can give is refused with exit code 2 and one message that names the problem and the fix,
before anything is written; nothing already written is changed."""

import hashlib
import json
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.teachers import TEACHERS_DIR


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its hash: what a refused command must leave as it was."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(capsys, argv: list[str], *words: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    for w in words:
        assert w in err, (w, err)
    return err


def copy_teacher(name: str, to: Path) -> Path:
    shutil.copytree(TEACHERS_DIR / name, to)
    return to


@pytest.mark.parametrize("env, words", [("MinAtar/Asterix-v1", ["MinAtar/Breakout-v1", "not MinAtar/Asterix-v1",
                                                                 "leave out --env"]),
                                        ("CartPole-v1", ["MinAtar/Breakout-v1", "leave out --env"])])
def test_evaluate_refuses_another_game(capsys, env, words):
    before = snapshot(TEACHERS_DIR / "minatar-breakout")
    refused(capsys, ["evaluate", "minatar-breakout", "--env", env, "--episodes", "1"], *words)
    assert snapshot(TEACHERS_DIR / "minatar-breakout") == before


def test_a_model_of_another_game_in_a_run_folder_is_refused_everywhere(capsys, tmp_path):
    # MinAtar Breakout and Asterix share the observation shape (4, 10, 10): only the recorded game tells them apart.
    folder = copy_teacher("minatar-breakout", tmp_path / "teacher")
    shutil.copy(TEACHERS_DIR / "minatar-asterix" / "model.safetensors", folder / "model.safetensors")
    before = snapshot(tmp_path)
    refused(capsys, ["evaluate", str(folder), "--episodes", "1"], "is a policy for MinAtar/Asterix-v1",
            "records MinAtar/Breakout-v1")
    refused(capsys, ["distill", "--teacher", str(folder), "--preset", "smoke", "--out", str(tmp_path / "s")],
            "MinAtar/Asterix-v1")
    assert snapshot(tmp_path) == before and not (tmp_path / "s").exists()


def test_a_net_for_other_observations_is_refused_not_a_torch_traceback(capsys, tmp_path):
    refused(capsys, ["evaluate", "cartpole", "--env", "MinAtar/Breakout-v1", "--episodes", "1"], "CartPole-v1")
    folder = copy_teacher("cartpole", tmp_path / "teacher")
    shutil.copy(TEACHERS_DIR / "minatar-breakout" / "model.safetensors", folder / "model.safetensors")
    refused(capsys, ["evaluate", str(folder), "--episodes", "1"], "MinAtar/Breakout-v1", "records CartPole-v1")


def test_the_network_and_env_check_itself(tmp_path):
    """Under the CLI: evaluate() and a trace refuse a policy whose shapes differ from the env's."""
    from workbench.distill.engine import load_teacher
    from workbench.envs import make_env
    from workbench.evaluate import evaluate
    from workbench.trace import record_trace

    teacher, _, _ = load_teacher("minatar-breakout")
    with pytest.raises(ValueError, match=r"observations \(4, 10, 10\) with 3 actions.*MinAtar/Asterix-v1"):
        evaluate(teacher, "MinAtar/Asterix-v1", 1)
    _, asterix = make_env("MinAtar/Asterix-v1", 1, 0)
    with pytest.raises(ValueError, match="the teacher is a network"):
        record_trace(teacher, teacher, asterix, max_steps=5)


def test_a_folder_holding_an_earlier_run_is_never_reused_without_resume(capsys, tmp_path):
    out = tmp_path / "run"
    args = ["distill", "--teacher", "cartpole", "--preset", "smoke", "--preset-net", "tiny", "--quiet"]
    assert main(args + ["--out", str(out)]) == 0
    capsys.readouterr()
    # a run killed before its first checkpoint leaves config.json and metrics.jsonl only
    for name in ("card.json", "model.safetensors", "checkpoint.json", "checkpoint.safetensors"):
        (out / name).unlink()
    before = snapshot(out)
    refused(capsys, args + ["--out", str(out), "--loss", "nll"], "already holds", "--resume")
    refused(capsys, args + ["--out", str(out), "--loss", "nll", "--resume"], "another recipe", "another loss")
    assert snapshot(out) == before


@pytest.mark.parametrize("argv, words", [
    (["train", "--env", "CartPole-v1", "--preset", "smoke", "--total-steps", "0"], ["total_steps", "above 0"]),
    (["train", "--env", "CartPole-v1", "--preset", "smoke", "--total-steps", "-5"], ["total_steps", "above 0"]),
    (["distill", "--teacher", "cartpole", "--preset", "smoke", "--total-steps", "0"], ["--total-steps", "above 0"]),
    (["distill", "--teacher", "cartpole", "--preset", "smoke", "--total-steps", "-5"], ["--total-steps", "above 0"]),
    (["distill", "--teacher", "cartpole", "--preset", "smoke", "--tau", "0"], ["--tau", "above 0"]),
    (["distill", "--teacher", "cartpole", "--preset", "smoke", "--beta", "1.5"], ["--beta", "[0, 1]"]),
    (["distill", "--teacher", "cartpole", "--preset", "smoke", "--batch-size", "0"], ["--batch-size"]),
    (["distill", "--teacher", "cartpole", "--preset", "smoke", "--student", "nature_cnn"],
     ["nature_cnn student cannot read", "--student mlp"]),
    (["distill-multitask", "--teachers", "minatar-breakout", "--preset", "smoke"], ["at least two teachers"]),
    (["distill-realtime", "--env", "CartPole-v1", "--preset", "smoke", "--eval-episodes", "11"], ["1 to 10"]),
    (["train", "--env", "ALE/Pong-v4", "--preset", "smoke"], ["ALE/Pong-v5"]),
    (["distill-dual", "--env", "CartPole-v1", "--batch", "600", "--memory", "500"], ["--batch", "--memory"]),
    (["distill-dual", "--env", "CartPole-v1", "--w-min", "5", "--w-max", "1"], ["--w-min", "w_max"]),
    (["distill-dual", "--env", "CartPole-v1", "--every", "-1"], ["--every", "0 or more"]),
    (["distill-dataset", "--teacher", "cartpole", "--size", "0"], ["--size", "above 0"]),
    (["distill-dataset", "--teacher", "cartpole", "--population", "3"], ["--population", "even"]),
    (["distill", "--from-dataset", "missing.safetensors", "--preset", "smoke"], ["no distilled set at missing",
                                                                                "distill-dataset"]),
    (["distill", "--teacher", "cartpole", "--from-dataset", "x.safetensors", "--loss", "ppd"], ["--loss ppd",
                                                                                              "--from-dataset"]),
    (["distill", "--teacher", "cartpole", "--method", "balanced", "--beta", "0.5"], ["--beta", "method balanced"]),
    (["distill", "--teacher", "cartpole", "--method", "balanced", "--balance-domain", "colour"],
     ["--balance-domain", "'colour' is not a known domain", "register_domain"]),
    (["distill", "--teacher", "cartpole", "--method", "balanced", "--total-steps", "1000"],
     ["--total-steps 1000", "--heldout-size", "at least"]),
    (["distill", "--teacher", "cartpole", "--method", "balanced", "--balance-tail", "1.5"],
     ["--balance-tail", "between 0 and 1"]),
])
def test_bad_values_are_refused_before_a_folder_is_written(capsys, tmp_path, argv, words):
    out = tmp_path / "run"
    refused(capsys, argv + ["--out", str(out)], *words)
    assert not out.exists()


def test_evaluate_zero_episodes_is_refused(capsys):
    refused(capsys, ["evaluate", "cartpole", "--episodes", "0"], "--episodes 0", "at least one")


def test_a_truncated_config_is_named(capsys, tmp_path):
    folder = copy_teacher("cartpole", tmp_path / "teacher")
    (folder / "config.json").write_text((folder / "config.json").read_text()[:40])
    refused(capsys, ["distill", "--teacher", str(folder), "--preset", "smoke", "--out", str(tmp_path / "s")],
            str(folder / "config.json"), "not valid JSON")
    assert not (tmp_path / "s").exists()


def _distill_argv(out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "workbench.cli", "distill", "--teacher", "minatar-breakout", "--preset", "smoke",
            "--total-steps", str(steps), "--checkpoint-every", "512", "--out", str(out), "--quiet"]


def test_a_full_disk_ends_in_one_line_and_keeps_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    subprocess.run(_distill_argv(out, 1024), check=True, capture_output=True)
    (out / "card.json").unlink()
    before = snapshot(out)
    limit = (out / "checkpoint.safetensors").stat().st_size // 2

    def small_disk():  # files may not grow past half a checkpoint: its next write fails as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(_distill_argv(out, 2048) + ["--resume"], capture_output=True, text=True,
                          preexec_fn=small_disk)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0] and "--resume" in lines[0], done.stderr
    after = snapshot(out)
    assert after["checkpoint.safetensors"] == before["checkpoint.safetensors"]
    assert after["checkpoint.json"] == before["checkpoint.json"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no half-written files left behind


def test_a_read_only_folder_ends_in_one_line_naming_it(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    # Root ignores permission bits; the immutable attribute holds even for root.
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable attribute (chattr +i)")
    try:
        done = subprocess.run(_distill_argv(locked / "run", 512), capture_output=True, text=True)
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(locked / "run") in lines[0] and "cannot write" in lines[0], done.stderr
    assert list(locked.iterdir()) == []


def test_a_checkpoint_from_before_the_first_update_resumes(capsys, tmp_path):
    out = tmp_path / "run"
    args = ["distill", "--teacher", "cartpole", "--preset", "smoke", "--preset-net", "tiny", "--quiet", "--out", str(out),
            "--learning-starts", "512", "--checkpoint-every", "128"]
    assert main(args + ["--total-steps", "256"]) == 0  # its optimizer has taken no step: no optimizer tensors saved
    (out / "card.json").unlink()
    assert main(args + ["--total-steps", "1024", "--resume"]) == 0, capsys.readouterr().err
    assert json.loads((out / "card.json").read_text())["updates"] > 0


def test_a_resume_keeps_the_defaults_its_run_settled(capsys, tmp_path):
    """A run made when the default temperature was 0.01 resumes without --tau: a changed default is not another
    recipe. Asking for another temperature is refused, naming both values."""
    out = tmp_path / "run"
    args = ["distill", "--teacher", "cartpole", "--preset", "smoke", "--preset-net", "tiny", "--quiet", "--out", str(out)]
    assert main(args + ["--tau", "0.01", "--total-steps", "512"]) == 0
    (out / "card.json").unlink()
    refused(capsys, args + ["--tau", "1", "--total-steps", "1024", "--resume"], "another tau", "0.01 there, 1.0 now")
    assert main(args + ["--total-steps", "1024", "--resume"]) == 0
    assert json.loads((out / "card.json").read_text())["tau"] == 0.01


def test_set_cannot_slip_another_student_size_past_its_flags(capsys, tmp_path):
    for field in ("student_net=net1", "student_width=0.5", "student_layers=8:16"):
        refused(capsys, ["distill", "--teacher", "cartpole", "--preset", "smoke", "--out", str(tmp_path / "x"),
                         "--set", field], "--set", "FIELD one of")
    assert not (tmp_path / "x").exists()


def test_bench_refuses_a_folder_for_its_figures_before_measuring(capsys, tmp_path):
    refused(capsys, ["bench", "--quick", "--out", str(tmp_path)], f"--out {tmp_path} is a folder", "bench.json")
