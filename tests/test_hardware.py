"""Any hardware: --device, the cores, the replay memory's device mirror, and one collection shared by many students.

A CI machine has no GPU: these tests take the device code path as far as a CPU allows (the memory's mirror gathered
on the CPU, runs resumed under another --device) and check what a machine without the device says."""

import json
import re

import numpy as np
import pytest
import torch

from workbench.cli import main
from workbench.distill.loop import distill, distill_config
from workbench.envs import make_env
from workbench import hardware
from workbench.hardware import DeviceError, cores, default_threads, env_threads, resolve_device
from workbench.memory import ReplayMemory

TEACHER = "minatar-breakout"


def test_auto_picks_the_device_that_is_there_and_a_missing_device_is_refused_by_name(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
        pytest.skip("this machine has a GPU: the refusal below is for machines without one")
    assert resolve_device("auto").type == ("mps" if hardware._mps_available() else "cpu")
    with pytest.raises(DeviceError, match=r"--device cuda: torch .* sees no CUDA GPU .*use --device cpu"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match=r"--device 'gpu' is not a device; choose auto, cpu, cuda, cuda:N or mps"):
        resolve_device("gpu")
    with pytest.raises(DeviceError, match="not a device"):
        resolve_device("cpu:1")
    monkeypatch.setenv("WORKBENCH_THREADS", "0")
    with pytest.raises(DeviceError, match=r"WORKBENCH_THREADS=0: give at least 1 thread"):
        default_threads()
    monkeypatch.delenv("WORKBENCH_THREADS")
    assert default_threads() == cores() >= 1
    monkeypatch.setenv("WORKBENCH_ENV_THREADS", "3")
    assert env_threads(8) == 3 and env_threads(2) == 2


def test_cli_refuses_a_device_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["distill", "--teacher", TEACHER, "--preset", "smoke", "--device", "gpu", "--out", str(out)]) == 2
    assert re.search(r"device \(--device\) must be one of auto, cpu, cuda, cuda:N or mps, got 'gpu'",
                     capsys.readouterr().err)
    if not torch.cuda.is_available():
        assert main(["distill", "--teacher", TEACHER, "--preset", "smoke", "--device", "cuda", "--out", str(out)]) == 2
        assert "sees no CUDA GPU" in capsys.readouterr().err
        assert main(["evaluate", TEACHER, "--episodes", "1", "--device", "cuda:0"]) == 2
    assert not out.exists()


@pytest.mark.parametrize("env_id", ["ALE/Breakout-v5", "MinAtar/Breakout-v1"])
def test_the_device_mirror_gathers_the_same_minibatches_as_host_memory(env_id):
    # Atari Breakout with random play loses its lives within a few hundred steps: the stacks cross episode starts,
    # where the mirror must pad with zeros as the host path does.
    _, spec = make_env(env_id, 1, 0)
    stack = spec.settings.get("stack_num", 1)
    extras = {"teacher": ((spec.n_actions,), np.float32)}
    host = ReplayMemory(1_200, spec.obs_shape, spec.obs_dtype, 4, stack, extras=extras)
    mirrored = ReplayMemory(1_200, spec.obs_shape, spec.obs_dtype, 4, stack, extras=extras)
    mirrored.keep_on("cpu")
    envs, _ = make_env(env_id, 4, 0)
    obs, _ = envs.reset(seed=0)
    rng = np.random.default_rng(0)
    starts = 0
    for _ in range(450):  # wraps the 300-entry streams
        action = rng.integers(0, spec.n_actions, 4)
        labels = {"teacher": rng.random((4, spec.n_actions)).astype(np.float32)}
        nxt, reward, term, trunc, info = envs.step(action)
        from workbench.envs import final_obs

        for m in (host, mirrored):
            m.add(obs, action, reward, term, trunc, final_obs(nxt, term | trunc, info), labels)
        starts += int((term | trunc).sum())
        obs = nxt
    envs.close()
    for k in range(3):
        a_obs, a_ex = host.sample_states(256, np.random.default_rng(k))
        b_obs, b_ex = mirrored.sample_states(256, np.random.default_rng(k))
        assert torch.equal(a_obs, b_obs) and torch.equal(a_ex["teacher"], b_ex["teacher"])
    if stack > 1:
        assert starts > 0, "no episode ended: the zero padding at episode starts went untested"
        padded = (a_obs.reshape(256, stack, -1) == 0).all(-1)
        assert padded.any(), "no sampled stack crossed an episode start"
    # Restored from its checkpoint arrays, the mirror is rebuilt from them.
    restored = ReplayMemory(1_200, spec.obs_shape, spec.obs_dtype, 4, stack, extras=extras)
    restored.keep_on("cpu")
    restored.load_state_arrays(host.state_arrays())
    c_obs, c_ex = restored.sample_states(256, np.random.default_rng(2))
    assert torch.equal(a_obs, c_obs) and torch.equal(a_ex["teacher"], c_ex["teacher"])


def test_a_run_records_its_device_and_machine_and_resumes_under_another_device(tmp_path, monkeypatch):
    base = dict(student_net="tiny", seed=4, checkpoint_every=512, log_every=512)
    skip = ("wall_seconds", "created", "replay_memory", "machine")
    plain = distill(distill_config("smoke", TEACHER, total_steps=512, device="cpu", **base), tmp_path / "plain",
                    progress_bar=False)
    # The memory's device mirror, forced on for a CPU: the same run, its minibatches gathered from the mirror.
    monkeypatch.setattr(hardware, "memory_on_device", lambda nbytes, device: True)
    mirrored = distill(distill_config("smoke", TEACHER, total_steps=512, device="cpu", **base), tmp_path / "m",
                       progress_bar=False)
    assert {k: v for k, v in mirrored.items() if k not in skip} == {k: v for k, v in plain.items() if k not in skip}
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["device"] == "cpu" and config["replay_memory"]["on"] == "device"
    assert plain["replay_memory"]["on"] == "host"
    assert config["machine"]["cpus_available"] == cores() and config["machine"]["device"] == "cpu"
    assert mirrored["device"] == "cpu" and mirrored["machine"]["torch_threads"] == torch.get_num_threads()
    # Resumed with --device auto, the memory where that device puts it (host memory on a CPU, the mirror on a GPU):
    # a run moves between devices.
    monkeypatch.undo()
    resumed = distill(distill_config("smoke", TEACHER, total_steps=1_024, device="auto", **base), tmp_path / "m",
                      resume=True, progress_bar=False)
    on = "device" if torch.cuda.is_available() else "host"
    assert json.loads((tmp_path / "m" / "config.json").read_text())["replay_memory"]["on"] == on
    assert resumed["env_steps"] == 1_024 and resumed["updates"] > mirrored["updates"]
    segments = {json.loads(line)["segment"] for line in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()}
    assert segments == {0, 1}


def test_students_of_a_sweep_share_one_collection_and_resume_together(tmp_path):
    from workbench.distill.shared import distill_shared
    from workbench.sweep import sweep

    kw = dict(teachers=[TEACHER], nets=["net3", "tiny"], losses=["kl", "nll"], seeds=[0, 1], preset="smoke",
              engine="local", overrides={"total_steps": 1_024})
    shared = sweep(out=tmp_path / "shared", **kw)
    alone = sweep(out=tmp_path / "alone", share_data=False, **kw)
    assert len(shared) == len(alone) == 8
    cards = [json.loads(p.read_text()) for p in sorted((tmp_path / "shared").glob("*/*/card.json"))]
    assert len(cards) == 8 and len({c["shared_data"]["collection"] for c in cards}) == 1
    collection = tmp_path / "shared" / "minatar-breakout" / "collection-s0"
    assert cards[0]["shared_data"]["collection"] == str(collection) and cards[0]["shared_data"]["collection_seed"] == 0
    for c in cards:  # each names the seven others it shared its data with
        assert len(c["shared_data"]["with"]) == 7 and c["env_steps"] == 1_024
    assert json.loads((collection / "checkpoint.json").read_text())["step"] == 1_024
    # Every student learnt: its own minibatches from the one stream, to its own numbers.
    assert shared.groupby("student_net").agreement.min().min() > 0.3
    assert len(set(shared.kl.round(6))) == 8
    # Cut off while the students wrote their cards: the two seed-0 runs left go on as the group they were, from the
    # same collection folder, and the others' cards stay as they are.
    folder = tmp_path / "shared" / "minatar-breakout"
    for run in ("net3-kl-s0", "tiny-nll-s0"):
        (folder / run / "card.json").unlink()
    kept = {p: p.read_text() for p in folder.glob("*/card.json")}
    again = sweep(out=tmp_path / "shared", **kw)
    assert {p: p.read_text() for p in kept} == kept and len(list(folder.glob("*/card.json"))) == 8
    assert sorted(p.name for p in folder.glob("collection-*")) == ["collection-s0"]
    pd_cols = ["student_net", "loss", "seed", "return_mean", "agreement"]
    assert again[pd_cols].equals(shared[pd_cols])
    assert not list((tmp_path / "alone").glob("*/collection-*"))
    assert all("shared_data" not in json.loads(p.read_text()) for p in (tmp_path / "alone").glob("*/*/card.json"))

    # A group goes on together: stopped at 1,024 steps, resumed to 2,048, every student and the collection advance.
    runs = sorted(p.parent for p in (tmp_path / "shared").glob("*/*/card.json"))[:3]
    configs = [distill_config("smoke", TEACHER, student_net=json.loads((r / "config.json").read_text())["student_net"],
                              seed=i, total_steps=2_048) for i, r in enumerate(runs)]
    group = tmp_path / "group"
    outs = [group / f"s{i}" for i in range(3)]
    distill_shared([dataclasses_replace(c, total_steps=1_024) for c in configs], outs, group / "collection",
                   progress_bar=False)
    again = distill_shared(configs, outs, group / "collection", resume=True, progress_bar=False)
    assert [c["env_steps"] for c in again] == [2_048] * 3
    assert json.loads((group / "collection" / "checkpoint.json").read_text())["step"] == 2_048
    # A student whose checkpoint is behind the collection's is named, and nothing is written.
    (outs[1] / "checkpoint.json").unlink()
    before = (outs[0] / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match=rf"collection in {group / 'collection'} stopped at step 2048, but "
                                         rf"{outs[1]} at 0: a group resumes together"):
        distill_shared([dataclasses_replace(c, total_steps=4_096) for c in configs], outs, group / "collection",
                       resume=True, progress_bar=False)
    assert (outs[0] / "metrics.jsonl").read_text() == before
    # Student-driven runs cannot share: their data depend on the student.
    with pytest.raises(ValueError, match=r"beta 'linear:1:0': their data depend on the student"):
        distill_shared([dataclasses_replace(configs[0], beta="linear:1:0")], [group / "x"], group / "c2")


def dataclasses_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


def _labelled_memory(n_envs: int = 4, steps: int = 300):
    """A MinAtar Breakout memory of the shipped teacher's play, each state labelled with its logits."""
    from workbench.collect import Collector
    from workbench.distill.engine import collect_step, load_teacher

    teacher, _, spec = load_teacher(TEACHER)
    envs, _ = make_env(spec.env_id, n_envs, 0)
    memory = ReplayMemory(4 * steps, spec.obs_shape, spec.obs_dtype, n_envs, 1,
                          extras={"teacher": ((spec.n_actions,), np.float32)})
    collector = Collector(envs, spec, memory, envs.reset(seed=0)[0])
    rng = np.random.default_rng(0)
    for _ in range(steps):
        collect_step(collector, teacher, rng, epsilon=0.0)
    return teacher, memory


def _student(teacher, device="cpu"):
    from workbench.nets import build, preset_spec

    student = build(preset_spec("net3", teacher.spec), "pi", seed=3).to(device)
    return student, torch.optim.Adam(student.parameters(), lr=1e-3)


def test_the_updater_takes_the_steps_student_update_takes_and_reads_the_losses_at_once():
    from workbench.distill.engine import StudentUpdater, student_update
    from workbench.distill.losses import get_loss

    teacher, memory = _labelled_memory()
    loss_fn = get_loss("kl", 1.0)
    (a, opt_a), (b, opt_b) = _student(teacher), _student(teacher)
    updater = StudentUpdater(b, opt_b, loss_fn, 64)
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    losses = [student_update(a, opt_a, loss_fn, memory, 64, rng_a) for _ in range(12)]
    for _ in range(12):
        updater(memory, rng_b)
    assert updater.take_losses() == losses and updater.take_losses() == []
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert losses[-1] < losses[0]  # it learns


def test_an_optimizer_saved_capturable_on_a_gpu_loads_and_steps_on_a_cpu():
    from workbench.distill.losses import get_loss
    from workbench.runs import load_optimizer_arrays, optimizer_arrays

    teacher, memory = _labelled_memory(steps=100)
    student, opt = _student(teacher)
    loss_fn = get_loss("kl", 1.0)
    obs, extras = memory.sample_states(32, np.random.default_rng(0))
    for _ in range(2):
        loss = loss_fn(student.logits(obs), extras["teacher"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    arrays, meta = optimizer_arrays(opt)
    for group in meta["param_groups"]:  # as a CUDA run's capturable Adam writes it
        group["capturable"] = True
    fresh, fresh_opt = _student(teacher)
    load_optimizer_arrays(fresh_opt, arrays, meta)
    assert fresh_opt.param_groups[0]["capturable"] is False
    assert fresh_opt.state_dict()["state"][0]["step"] == 2
    loss = loss_fn(fresh.logits(obs), extras["teacher"])
    fresh_opt.zero_grad()
    loss.backward()
    fresh_opt.step()  # a capturable Adam would refuse CPU weights here
    assert fresh_opt.state_dict()["state"][0]["step"] == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/device_check.sh runs it on one)")
def test_gpu_updates_replayed_as_one_cuda_graph_match_eager_ones():
    from workbench.distill.engine import StudentUpdater
    from workbench.distill.losses import get_loss

    teacher, memory = _labelled_memory()
    memory.keep_on("cuda")
    loss_fn = get_loss("kl", 1.0)
    (a, opt_a), (b, opt_b) = _student(teacher, "cuda"), _student(teacher, "cuda")
    eager, graphed = StudentUpdater(a, opt_a, loss_fn, 64, graph=False), StudentUpdater(b, opt_b, loss_fn, 64)
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    deterministic = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True  # the same convolution kernels for both: only the graph differs
    try:
        for _ in range(20):
            eager(memory, rng_a)
            graphed(memory, rng_b)
    finally:
        torch.backends.cudnn.deterministic = deterministic
    assert graphed.mode == "cuda graph" and eager.mode == "eager" and opt_b.param_groups[0]["capturable"]
    losses = graphed.take_losses()
    assert len(losses) == 20 and np.allclose(losses, eager.take_losses(), rtol=1e-4, atol=1e-5)
    assert losses[-1] < losses[0]
    assert all(torch.allclose(p, q, rtol=1e-3, atol=1e-4) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/device_check.sh runs it on one)")
def test_a_run_on_the_gpu_resumes_on_the_cpu_and_back(tmp_path):
    base = dict(student_net="net3", seed=5, checkpoint_every=512, log_every=512)
    gpu = distill(distill_config("smoke", TEACHER, total_steps=512, device="cuda", **base), tmp_path / "r",
                  progress_bar=False)
    assert gpu["device"].startswith("cuda") and gpu["machine"]["gpu"] and gpu["replay_memory"]["on"] == "device"
    cpu = distill(distill_config("smoke", TEACHER, total_steps=1_024, device="cpu", **base), tmp_path / "r",
                  resume=True, progress_bar=False)
    assert cpu["device"] == "cpu" and cpu["env_steps"] == 1_024
    back = distill(distill_config("smoke", TEACHER, total_steps=1_536, device="cuda", **base), tmp_path / "r",
                   resume=True, progress_bar=False)
    assert back["device"].startswith("cuda") and back["updates"] > cpu["updates"] > gpu["updates"]
    assert gpu["student_updates"] == back["student_updates"] == "cuda graph" and cpu["student_updates"] == "eager"
    # The saved student is device-free: it loads and acts on the CPU.
    from workbench.evaluate import evaluate
    from workbench.runs import load_policy

    policy = load_policy(tmp_path / "r")
    assert next(policy.parameters()).device.type == "cpu"
    assert evaluate(policy, "MinAtar/Breakout-v1", 1, 0).returns.shape == (1,)


def test_overlapped_atari_collection_stores_what_the_synchronous_one_does():
    # Two halves stepping in turn (ale-py send/recv) while the teacher labels the other: with a greedy teacher the
    # actions are a function of the states, so the memory must hold the same transitions, frame for frame.
    from workbench.collect import Collector, OverlapCollector, make_collector
    from workbench.distill.engine import collect_step, load_teacher

    teacher, _, spec = load_teacher("atari-breakout")
    extras = {"teacher": ((spec.n_actions,), np.float32)}
    memories, ended = [], []
    for overlap in (False, True):
        memory = ReplayMemory(2_000, spec.obs_shape, spec.obs_dtype, 4, 4, extras=extras)
        collector = make_collector(spec, 4, 11, memory, overlap=overlap)
        assert isinstance(collector, OverlapCollector if overlap else Collector)
        rng = np.random.default_rng(0)
        episodes = []
        for _ in range(150):
            episodes += collect_step(collector, teacher, rng, epsilon=0.0)
        collector.close()
        memories.append(memory)
        ended.append(sorted(episodes))
    sync, overlapped = (m.state_arrays() for m in memories)
    assert sync.keys() == overlapped.keys()
    for key in sync:
        if key == "extra.teacher":  # labelled in batches of 2, not 4: the CPU's conv kernels round differently
            np.testing.assert_allclose(sync[key], overlapped[key], rtol=1e-2, atol=1e-3)
        else:
            assert np.array_equal(sync[key], overlapped[key]), key
    assert ended[0] == ended[1]
    assert memories[0].written.sum() >= 600
