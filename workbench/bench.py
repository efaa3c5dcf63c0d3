"""`workbench bench`: speed and memory, each printed as a ratio against a baseline measured in the same run."""

from __future__ import annotations

import tempfile
import time

import numpy as np

from .collect import Collector, make_collector
from .distill.engine import StudentUpdater, collect_step, load_teacher
from .distill.losses import get_loss
from .envs import make_env
from .hardware import (cores, env_processes, env_threads, env_threads_asked, machine, memory_on_device, place,
                       resolve_device)
from .memory import ReplayMemory
from .nets import build, make_spec, preset_spec


def _interleaved(runs: dict, chunks: int) -> dict:
    """Steps/s of each named ``run(n_chunk) -> steps`` over ``chunks`` rounds in ABBA order, and the median of
    the per-round ratios of the first over the second: this VM's speed drifts by +-20% within seconds, and adjacent
    chunks see the same machine. The first round warms caches up and is not counted."""
    names = list(runs)
    rates: dict = {n: [] for n in names}
    for k in range(chunks + 1):
        for name in (names if k % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            steps = runs[name]()
            if k:
                rates[name].append(steps / (time.perf_counter() - t0))
    ratio = float(np.median(np.array(rates[names[0]]) / np.array(rates[names[1]])))
    return {f"{n}_steps_per_s": round(float(np.median(rates[n]))) for n in names} | {"ratio": round(ratio, 3)}


def _against_raw_env(env_id: str, settings: dict, n_envs: int, steps: int, name: str, collect, extras=None,
                     chunks: int = 6, seed: int = 0, overlap: bool = False) -> dict:
    """Env steps/s of ``collect(collector, actions)`` (one chunk of collection) over the raw env's under the same
    random actions: two copies of the same vector envs stepped in alternating chunks."""
    raw_envs, spec = make_env(env_id, n_envs, seed, **settings)
    per_chunk = max(1, steps // chunks)
    memory = ReplayMemory(max(4 * per_chunk * n_envs, 64 * n_envs), spec.obs_shape, spec.obs_dtype, n_envs,
                          spec.settings.get("stack_num", 1), extras=extras)
    collector = make_collector(spec, n_envs, seed, memory, overlap)
    actions = np.random.default_rng(seed).integers(0, spec.n_actions, size=(per_chunk, n_envs))

    def raw():
        for t in range(per_chunk):
            raw_envs.step(actions[t])
        return per_chunk * n_envs

    def collected():
        collect(collector, actions)
        return per_chunk * n_envs

    out = _interleaved({name: collected, "raw_env": raw}, chunks)
    raw_envs.close()
    collector.close()
    return out | {"n_envs": n_envs, "env_threads": env_threads(n_envs) if env_id.startswith("ALE/") else 1}


def collector_ratio(env_id: str, n_envs: int, steps: int, chunks: int = 6) -> dict:
    """The collector (memory writes, episode bookkeeping) under random actions over the raw env under the same
    actions."""
    def collect(collector, actions):
        it = iter(actions)
        for _ in range(len(actions)):
            collector.step(lambda _obs: next(it))

    return _against_raw_env(env_id, {}, n_envs, steps, "collector", collect, chunks=chunks) | {"target": ">= 0.9"}


def distill_collection_ratio(teacher_name: str, n_envs: int, steps: int, device, chunks: int = 4,
                             overlap: bool = False) -> dict:
    """Env steps/s of distillation's collection (the teacher on ``device`` labels every state and acts
    epsilon-greedy, the memory stores state and label) over the raw env's with the same envs and env threads;
    ``overlap``: Atari's halves stepping while the other half is labelled (``collect.OverlapCollector``)."""
    import torch

    teacher, _, spec = load_teacher(teacher_name)
    place(device, None, teacher)
    rng = np.random.default_rng(0)

    def collect(collector, actions):
        for _ in range(len(actions)):
            collect_step(collector, teacher, rng, 0.05)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    out = _against_raw_env(spec.env_id, spec.settings, n_envs, steps, "distill_collection", collect,
                           extras={"teacher": ((spec.n_actions,), np.float32)}, chunks=chunks, overlap=overlap)
    return out | {"teacher": teacher_name, "device": str(device), "overlap": overlap, "target": ">= 0.8"}


def vector_env_ratio(env_id: str = "MinAtar/Breakout-v1", n_envs: int = 8, steps: int = 400, seed: int = 0,
                     workers: int | None = None) -> dict:
    """MinAtar or classic-control envs stepped by worker processes over one process's ``SyncVectorEnv``, the same
    envs under the same actions: the workbench's ``ProcessVectorEnv`` (``workers`` processes, default one per core,
    a share of the envs each) and, for up to 16 envs, gymnasium's ``AsyncVectorEnv`` (a process per env)."""
    import gymnasium as gym

    from .envs import make_env
    from .vector import ProcessVectorEnv, worker_count

    workers = workers or cores()
    envs = {"processes": ProcessVectorEnv(env_id, n_envs, seed, workers, {}),
            "sync": make_env(env_id, n_envs, seed, num_threads=1)[0]}
    if n_envs <= 16:
        from .envs import MINATAR_DEFAULTS, _single_classic, _single_minatar

        settings = dict(MINATAR_DEFAULTS) if env_id.startswith("MinAtar/") else {}
        maker = _single_minatar if env_id.startswith("MinAtar/") else _single_classic
        envs["async"] = gym.vector.AsyncVectorEnv([lambda: maker(env_id, settings) for _ in range(n_envs)],
                                                  autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, shared_memory=True)
    actions = np.random.default_rng(seed).integers(0, envs["sync"].single_action_space.n, size=(steps, n_envs))
    for e in envs.values():
        e.reset(seed=seed)

    def stepper(e):
        def run():
            for t in range(steps):
                e.step(actions[t])
            return steps * n_envs
        return run

    out = _interleaved({k: stepper(envs[k]) for k in ("processes", "sync")}, 4)
    out = {"processes_steps_per_s": out["processes_steps_per_s"], "sync_steps_per_s": out["sync_steps_per_s"],
           "processes_over_sync": out["ratio"]}
    if "async" in envs:
        out["async_over_sync"] = _interleaved({k: stepper(envs[k]) for k in ("async", "sync")}, 2)["ratio"]
    for e in envs.values():
        e.close()
    used = worker_count(n_envs, env_processes())
    return out | {"env_id": env_id, "n_envs": n_envs, "workers": min(workers, n_envs), "cores": cores(),
                  "make_env_uses": (f"{used} worker processes" if used > 1 else "one process (SyncVectorEnv)") +
                  " (--env-threads N asks for up to N)"}


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


def training_steps_per_second(algo: str, env_id: str, steps: int, device="cpu", **overrides) -> float:
    if algo == "dqn":
        from .agents.dqn import dqn_config, train_dqn

        config = dqn_config("demo", env_id, total_steps=steps, learning_starts=min(1000, steps // 4),
                            eval_episodes=1, log_every=steps, checkpoint_every=10 * steps, device=str(device),
                            **overrides)
        train = train_dqn
    else:
        from .agents.ppo import ppo_config, train_ppo

        config = ppo_config("demo", env_id, total_steps=steps, eval_episodes=1, log_every=steps,
                            checkpoint_every=10 * steps, device=str(device), **overrides)
        train = train_ppo
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        card = train(config, d + "/run", progress_bar=False)
        # Time the training alone: the closing evaluation is not training.
        return card["env_steps"] / min(card["wall_seconds"], time.perf_counter() - t0)


def env_workers_training_ratio(n_envs: int = 256, steps: int = 65_536, rounds: int = 2, device="cpu") -> dict:
    """A MinAtar Breakout PPO teacher (demo preset, ``n_envs`` envs) trained with its envs over one worker process
    per core (``--env-threads`` the cores) against one process, everything else equal (the same numbers either
    way): env steps/s, alternating rounds, the median of the rounds' ratios. Above 1, asking for the workers pays
    on this machine and device; ``make_env`` starts them only when asked."""
    import torch

    from .vector import worker_count

    workers = worker_count(n_envs, cores())
    if workers < 2:
        return {"skipped": f"{cores()} core(s) for {n_envs} envs: fewer than 2 workers of 64+ envs"}
    rates: dict = {"workers": [], "one_process": []}
    for k in range(rounds):
        for name, asked in [("workers", cores()), ("one_process", 1)][::1 if k % 2 == 0 else -1]:
            with env_threads_asked(asked):
                rates[name].append(training_steps_per_second("ppo", "MinAtar/Breakout-v1", steps, device,
                                                             n_envs=n_envs))
    ratio = float(np.median(np.array(rates["workers"]) / np.array(rates["one_process"])))
    return {"workers_steps_per_s": round(float(np.median(rates["workers"]))),
            "one_process_steps_per_s": round(float(np.median(rates["one_process"]))), "ratio": round(ratio, 3),
            "n_envs": n_envs, "workers": workers, "torch_threads": torch.get_num_threads(),
            "device": str(device)}


def distill_updates_ratio(teacher: str = "minatar-breakout", updates: int = 300, batch_size: int = 256,
                          seed: int = 0, device=None) -> dict:
    """Updates/s of the distillation loop's update step (sampling from the replay memory included) over a bare
    torch loop that trains the same student on the same batches, pre-made as tensors on the same device, in the
    same process. On a CUDA device the loop's step is the run's: one CUDA graph (``engine.StudentUpdater``); the
    bare loop stays eager, as a user's own loop would be."""
    import torch

    device = resolve_device(device)

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

    if memory_on_device(memory.nbytes(), device):
        memory.keep_on(device)

    def fresh():
        return build(preset_spec("net3", teacher.spec), "pi", seed=seed).to(device)

    # Same batches for both: drawn with the same generator. The bare loop gets them pre-made as tensors.
    rng0 = np.random.default_rng(seed)
    batches = [memory.sample_states(batch_size, rng0, device) for _ in range(updates)]

    # Two students trained side by side, alternating in short chunks, so that both see the same machine
    # (this VM's speed drifts by +-20% within seconds). The ratio is the median of the ratios of adjacent
    # chunks, which cancels drift slower than a chunk pair.
    chunk = 20
    loop_student = fresh()
    # The loop's updater as a distillation run makes it: on a CUDA device its step is one CUDA graph.
    loop_update = StudentUpdater(loop_student, torch.optim.Adam(loop_student.parameters(), lr=1e-3), loss_fn,
                                 batch_size)
    bare_student = fresh()
    bare_opt = torch.optim.Adam(bare_student.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    rates = {"loop": [], "bare": []}

    def loop_chunk(start):
        for _ in range(chunk):
            loop_update(memory, rng)  # samples the memory itself
        loop_update.take_losses()  # and reads its losses, as a run does at each metrics line

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
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            rates[name].append(chunk / (time.perf_counter() - t0))
    loop_rate, bare_rate = float(np.median(rates["loop"])), float(np.median(rates["bare"]))
    return {"loop_updates_per_s": round(loop_rate, 1), "bare_torch_updates_per_s": round(bare_rate, 1),
            "ratio": round(float(np.median(np.array(rates["loop"]) / np.array(rates["bare"]))), 3),
            "target": ">= 0.9", "batch_size": batch_size, "device": str(device),
            "loop_updates": loop_update.mode,
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


def cleanrl_training_ratio(env_id: str = "ALE/Breakout-v5", chunks: int = 4, device=None, seed: int = 0) -> dict:
    """Env steps/s of the workbench's PPO teacher training on Atari (``PPOLearner`` at the ale demo preset: cleanrl's
    settings, 8 envs x 128 steps, 4 epochs of 4 minibatches) over cleanrl's ``ppo_atari.py`` loop on the same settings
    (:class:`workbench.reference.CleanrlStylePPO`: gymnasium's SyncVectorEnv behind SB3's Atari wrappers), one rollout
    and one update per chunk, alternating in ABBA order in this process: the same cores, torch threads and device."""
    import torch

    from .agents.ppo import PPOLearner, ppo_config
    from .reference import CleanrlStylePPO

    device = resolve_device(device)
    config = ppo_config("demo", env_id, seed=seed, total_steps=10**9, device=str(device))
    learner = PPOLearner(config, device)
    learner.start()
    reference = CleanrlStylePPO(env_id.removeprefix("ALE/").split("-v")[0], config.n_envs, config.n_steps,
                                config.n_minibatches, config.update_epochs, config.lr, config.clip_coef, seed, device)

    def workbench():
        learner.collect()
        learner.learn()
        return learner.batch_size

    def cleanrl():
        reference.collect()
        reference.learn()
        return config.n_envs * config.n_steps

    out = _interleaved({"workbench": workbench, "cleanrl_style": cleanrl}, chunks)
    learner.envs.close()
    reference.close()
    return out | {"env_id": env_id, "n_envs": config.n_envs, "n_steps": config.n_steps, "device": str(device),
                  "torch_threads": torch.get_num_threads(), "env_threads": env_threads(config.n_envs),
                  "target": ">= 1 (at least as fast per core as cleanrl)"}


def run_bench(quick: bool = False, device: str = "auto", on_section=None) -> dict:
    """Every ratio, measured on this machine and ``device``; ``quick`` makes each measurement smaller (CI).
    ``on_section(out)``, where given, is called with the figures so far after each section (``bench --out``
    writes them, so that a bench cut short keeps what it measured)."""
    import importlib.util

    device = resolve_device(device)
    scale = 1 if quick else 5

    def collector():
        # MinAtar's chunks are short, and this VM's speed drifts: more of them give a steadier median.
        return {env_id: collector_ratio(env_id, n_envs, steps, chunks) for env_id, n_envs, steps, chunks in
                (("MinAtar/Breakout-v1", 8, 4000 * scale, 16), ("ALE/Pong-v5", 2, 300 * scale, 6))}

    def distill_collection():
        # The teacher labels every state on the device; on a CPU the Atari teacher's forward passes are the bound.
        out = {teacher: distill_collection_ratio(teacher, n_envs, steps, device)
               for teacher, n_envs, steps in (("minatar-breakout", 8, 800 * scale), ("atari-breakout", 8, 40 * scale))}
        out["atari-breakout overlapped"] = distill_collection_ratio("atari-breakout", 8, 40 * scale, device,
                                                                    overlap=True)
        return out

    def vector_env():
        out = {str(n): vector_env_ratio(n_envs=n, steps=max(20, 800 * scale // n)) for n in (8, 256)}
        out["ppo_256_envs"] = env_workers_training_ratio(steps=32_768 * (1 if quick else 4), device=device)
        return out

    def training():
        return {"MinAtar/Breakout-v1": {
            "raw_env_steps_per_s_64_envs": collector_ratio("MinAtar/Breakout-v1", 64, 200)["raw_env_steps_per_s"],
            "dqn_env_steps_per_s": round(training_steps_per_second("dqn", "MinAtar/Breakout-v1", 4_000 * scale,
                                                                   device)),
            "ppo_env_steps_per_s": round(training_steps_per_second("ppo", "MinAtar/Breakout-v1", 16_384 * scale,
                                                                   device)),
        }}

    def vs_cleanrl():  # cleanrl's wrapper chain is SB3's wrappers
        if not importlib.util.find_spec("stable_baselines3"):
            return {"skipped": "needs Stable-Baselines3's Atari wrappers: pip install -e '.[sb3]' (make venv does)"}
        return cleanrl_training_ratio(chunks=1 if quick else 4, device=device)

    sections = {
        "collector": collector, "distill_collection": distill_collection, "vector_env": vector_env,
        "replay": lambda: {**replay_bytes_ratio(2_000 * scale), "target": "<= 1.1"}, "training": training,
        "distill_updates": lambda: distill_updates_ratio(updates=200 * scale, device=device),
        "nature_cnn_layout": lambda: nature_cnn_layout_ratio(batch_size=64 if quick else 256),
        "atari_ppo_vs_cleanrl": vs_cleanrl,
    }
    out: dict = {"machine": machine(device)}
    if on_section is not None:  # at once: a file that cannot be written fails before anything is measured
        on_section(out)
    for name, measure in sections.items():
        out[name] = measure()
        if on_section is not None:
            on_section(out)
    return out
