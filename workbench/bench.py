"""`workbench bench`: speed and memory, each printed as a ratio against a baseline measured in the same run."""

from __future__ import annotations

import tempfile
import time

import numpy as np

from .collect import Collector
from .distill.engine import collect_step, load_teacher, student_update
from .distill.losses import get_loss
from .envs import make_env, random_steps_per_second
from .memory import ReplayMemory
from .nets import build, make_spec, preset_spec


def collector_steps_per_second(env_id: str, n_envs: int, steps: int, seed: int = 0) -> float:
    """The collector (memory writes, episode bookkeeping) under random actions, as the raw baseline plays."""
    envs, spec = make_env(env_id, n_envs, seed)
    obs, _ = envs.reset(seed=seed)
    memory = ReplayMemory(max(steps * n_envs, 64 * n_envs), spec.obs_shape, spec.obs_dtype, n_envs,
                          spec.settings.get("stack_num", 1))
    collector = Collector(envs, spec, memory, obs)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, spec.n_actions, size=(steps, n_envs))
    t = iter(actions)
    t0 = time.perf_counter()
    for _ in range(steps):
        collector.step(lambda _obs: next(t))
    dt = time.perf_counter() - t0
    envs.close()
    return steps * n_envs / dt


def replay_bytes_ratio(transitions: int = 5_000, seed: int = 0) -> dict:
    """Bytes the replay memory holds per stored Atari transition, over the bytes of one 84x84 frame."""
    envs, spec = make_env("ALE/Pong-v5", 2, seed)
    obs, _ = envs.reset(seed=seed)
    memory = ReplayMemory(transitions, spec.obs_shape, spec.obs_dtype, 2, spec.settings["stack_num"])
    collector = Collector(envs, spec, memory, obs)
    rng = np.random.default_rng(seed)
    while memory.written.sum() < transitions + 100:  # fill, then wrap
        collector.step(lambda o: rng.integers(0, spec.n_actions, 2))
    envs.close()
    per_transition = memory.nbytes() / len(memory)
    return {"replay_bytes_per_transition": round(per_transition, 1), "frame_bytes": 84 * 84,
            "replay_bytes_ratio": round(per_transition / (84 * 84), 4)}


def training_steps_per_second(algo: str, env_id: str, steps: int) -> float:
    if algo == "dqn":
        from .agents.dqn import dqn_config, train_dqn

        config = dqn_config("demo", env_id, total_steps=steps, learning_starts=min(1000, steps // 4),
                            eval_episodes=1, log_every=steps, checkpoint_every=10 * steps)
        train = train_dqn
    else:
        from .agents.ppo import ppo_config, train_ppo

        config = ppo_config("demo", env_id, total_steps=steps, eval_episodes=1, log_every=steps,
                            checkpoint_every=10 * steps)
        train = train_ppo
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        card = train(config, d + "/run", progress_bar=False)
        # Time the training alone: the closing evaluation is not training.
        return card["env_steps"] / min(card["wall_seconds"], time.perf_counter() - t0)


def distill_updates_ratio(teacher: str = "minatar-breakout", updates: int = 300, batch_size: int = 256,
                          seed: int = 0) -> dict:
    """Updates/s of the distillation loop's update step (sampling from the replay memory included) over a bare
    torch loop that trains the same student on the same batches, pre-made as tensors, in the same process."""
    import torch

    teacher, _, spec = load_teacher(teacher)
    envs, _ = make_env(spec.env_id, 8, seed, **spec.settings)
    obs, _ = envs.reset(seed=seed)
    memory = ReplayMemory(20_000, spec.obs_shape, spec.obs_dtype, 8, 1,
                          extras={"teacher": ((spec.n_actions,), np.float32)})
    collector = Collector(envs, spec, memory, obs)
    rng_collect = np.random.default_rng(seed)
    for _ in range(1_000):
        collect_step(collector, teacher, rng_collect, epsilon=0.0)
    envs.close()
    loss_fn = get_loss("kl", 0.01)

    def fresh():
        student = build(preset_spec("net3", teacher.spec), "pi", seed=seed)
        return student, torch.optim.Adam(student.parameters(), lr=1e-3)

    # Same batches for both: drawn with the same generator. The bare loop gets them pre-made as tensors.
    rng0 = np.random.default_rng(seed)
    batches = [memory.sample_states(batch_size, rng0) for _ in range(updates)]

    # Two students trained side by side, alternating in short chunks, so that both see the same machine
    # (this VM's speed drifts by +-20% within seconds). The ratio is the median of the ratios of adjacent
    # chunks, which cancels drift slower than a chunk pair.
    chunk = 20
    loop_student, loop_opt = fresh()
    bare_student, bare_opt = fresh()
    rng = np.random.default_rng(seed)
    rates = {"loop": [], "bare": []}

    def loop_chunk(start):
        for _ in range(chunk):
            student_update(loop_student, loop_opt, loss_fn, memory, batch_size, rng)  # samples the memory itself

    def bare_chunk(start):
        for obs_B, extras in batches[start:start + chunk]:
            loss = loss_fn(bare_student.logits(obs_B), extras["teacher"])
            bare_opt.zero_grad()
            loss.backward()
            bare_opt.step()

    # ABBA order: whichever goes second in a pair is not systematically favoured by a warm cache.
    for k, start in enumerate(range(0, updates - chunk + 1, chunk)):
        order = [("loop", loop_chunk), ("bare", bare_chunk)][::1 if k % 2 == 0 else -1]
        for name, run_chunk in order:
            t0 = time.perf_counter()
            run_chunk(start)
            rates[name].append(chunk / (time.perf_counter() - t0))
    loop_rate, bare_rate = float(np.median(rates["loop"])), float(np.median(rates["bare"]))
    return {"loop_updates_per_s": round(loop_rate, 1), "bare_torch_updates_per_s": round(bare_rate, 1),
            "ratio": round(float(np.median(np.array(rates["loop"]) / np.array(rates["bare"]))), 3),
            "target": ">= 0.9", "batch_size": batch_size,
            "student": "net3 of " + teacher.spec.family}


def nature_cnn_layout_ratio(batch_size: int = 256, chunks: int = 6, chunk: int = 3, seed: int = 0) -> dict:
    """Training steps/s of a Nature CNN (PPO's actor-critic, Pong's 6 actions) as ``Policy`` runs it (channels-last
    input to oneDNN's convs) over the same net fed plain NCHW, on the same batch, alternating in ABBA chunks."""
    import torch

    spec = make_spec((4, 84, 84), 6, width=1.0, value_head=True)
    obs_B = torch.randint(0, 256, (batch_size, 4, 84, 84), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(seed))
    nets = {"channels_last": build(spec, "pi", seed=seed), "nchw": build(spec, "pi", seed=seed)}
    opts = {k: torch.optim.Adam(n.parameters(), lr=2.5e-4) for k, n in nets.items()}

    def step(name):
        net = nets[name]
        if name == "channels_last":
            logits_BA, value_B = net.logits_and_value(obs_B)
        else:  # the trunk called directly: the layout torch picks by default
            h_BF = net.trunk(obs_B.float() / 255.0)
            logits_BA, value_B = net.head(h_BF), net.value(h_BF).squeeze(-1)
        loss = logits_BA.logsumexp(-1).mean() + value_B.square().mean()
        opts[name].zero_grad()
        loss.backward()
        opts[name].step()

    rates: dict = {"channels_last": [], "nchw": []}
    for k in range(chunks + 1):
        for name in (["channels_last", "nchw"] if k % 2 == 0 else ["nchw", "channels_last"]):
            t0 = time.perf_counter()
            for _ in range(chunk):
                step(name)
            if k:  # the first round warms oneDNN's kernel caches up
                rates[name].append(chunk / (time.perf_counter() - t0))
    ratio = float(np.median(np.array(rates["channels_last"]) / np.array(rates["nchw"])))
    return {"channels_last_steps_per_s": round(float(np.median(rates["channels_last"])), 2),
            "nchw_steps_per_s": round(float(np.median(rates["nchw"])), 2), "ratio": round(ratio, 3),
            "batch_size": batch_size, "target": "> 1 (the layout Policy uses is the faster one)"}


def run_bench(quick: bool = False) -> dict:
    scale = 1 if quick else 5
    out: dict = {"collector": {}}
    for env_id, n_envs, steps in (("MinAtar/Breakout-v1", 8, 1000 * scale), ("ALE/Pong-v5", 2, 400 * scale)):
        raw = random_steps_per_second(env_id, n_envs, steps)
        col = collector_steps_per_second(env_id, n_envs, steps)
        out["collector"][env_id] = {"raw_env_steps_per_s": round(raw), "collector_steps_per_s": round(col),
                                    "ratio": round(col / raw, 3), "target": ">= 0.9"}
    out["replay"] = {**replay_bytes_ratio(2_000 * scale), "target": "<= 1.1"}
    raw = random_steps_per_second("MinAtar/Breakout-v1", 64, 200)
    out["training"] = {"MinAtar/Breakout-v1": {
        "raw_env_steps_per_s_64_envs": round(raw),
        "dqn_env_steps_per_s": round(training_steps_per_second("dqn", "MinAtar/Breakout-v1", 4_000 * scale)),
        "ppo_env_steps_per_s": round(training_steps_per_second("ppo", "MinAtar/Breakout-v1", 16_384 * scale)),
    }}
    out["distill_updates"] = distill_updates_ratio(updates=200 * scale)
    out["nature_cnn_layout"] = nature_cnn_layout_ratio(batch_size=64 if quick else 256)
    return out
