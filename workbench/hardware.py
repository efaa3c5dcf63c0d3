"""Where the networks run and how many cores they use: ``--device`` and ``--threads``, each defined once here.

- ``resolve_device("auto" | "cpu" | "cuda" | "cuda:N" | "mps")``: ``auto`` takes an accelerator when torch sees
  one (CUDA, then Apple's MPS), else the CPU; asking for one that is not there fails by name before anything runs.
- ``cores()``: the CPU cores this process may use (its affinity mask: a container's or a batch job's share, not
  the host's count). Torch threads and Atari env threads default to it; ``WORKBENCH_THREADS`` and
  ``WORKBENCH_ENV_THREADS`` (or ``--threads``, ``--env-threads``) pin fewer, as the tests do; the env threads also
  let MinAtar and classic-control envs step in worker processes (``env_processes``).
- ``memory_on_device``: whether a replay memory is mirrored on the device (see there).
- ``machine(device)``: what a run's config.json and card record about the machine.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re

import torch

DEVICES = "auto, cpu, cuda, cuda:N or mps"
# A replay memory is mirrored on a GPU only while it takes at most this share of the memory free there: the
# networks, their optimizers and the batches need the rest (an Atari net3 run's are a few hundred MB).
DEVICE_MEMORY_SHARE = 0.5


class DeviceError(ValueError):
    """A device that is not there or not a device, with what to give instead."""


def cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise DeviceError(f"{name}={raw!r} is not a whole number; set it to a count of threads, e.g. {name}=1, or "
                          "unset it to use every core") from None
    if value < 1:
        raise DeviceError(f"{name}={value}: give at least 1 thread, or unset it to use every core")
    return value


def default_threads() -> int:
    """Torch threads when none are asked for: WORKBENCH_THREADS, else every core available."""
    return _env_int("WORKBENCH_THREADS") or cores()


def env_threads(n_envs: int) -> int:
    """Threads of ale-py's Atari vector env: WORKBENCH_ENV_THREADS, else one per core available, at most one per env."""
    return max(1, min(n_envs, _env_int("WORKBENCH_ENV_THREADS") or cores()))


@contextlib.contextmanager
def env_threads_asked(n: int | None):
    """WORKBENCH_ENV_THREADS=n while the block runs (and in the processes it starts), as it was afterwards; None
    leaves it alone (``--env-threads``)."""
    before = os.environ.get("WORKBENCH_ENV_THREADS")
    if n is not None:
        os.environ["WORKBENCH_ENV_THREADS"] = str(n)
    try:
        yield
    finally:
        if n is not None:
            if before is None:
                os.environ.pop("WORKBENCH_ENV_THREADS", None)
            else:
                os.environ["WORKBENCH_ENV_THREADS"] = before


def env_processes() -> int:
    """The most worker processes MinAtar and classic-control envs may step in (``vector.worker_count``): only where
    WORKBENCH_ENV_THREADS asks, else 1 (one process). On a 2-core CPU a PPO teacher with 256 MinAtar envs trained
    level to 7% slower with 2 workers (they and torch's threads share the cores; ``bench``'s
    ``vector_env.ppo_256_envs``); workers should pay where the networks are on a GPU and cores are spare."""
    return _env_int("WORKBENCH_ENV_THREADS") or 1


def set_threads(n: int | None = None) -> int:
    """Torch's intra-op threads: ``n``, else :func:`default_threads`; returns the number set."""
    n = default_threads() if n is None else n
    if n < 1:
        raise DeviceError(f"--threads {n}: give at least 1 (default: the {cores()} cores available)")
    torch.set_num_threads(n)
    return n


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """A torch.device from ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; a DeviceError that names what this
    machine has when the one asked for is not there."""
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    m = re.fullmatch(r"(cpu|mps|cuda)(?::(\d+))?", name)
    if not m or (m.group(2) is not None and m.group(1) != "cuda"):
        raise DeviceError(f"--device {name!r} is not a device; choose {DEVICES}")
    kind, index = m.group(1), m.group(2)
    if kind == "cuda":
        if not torch.cuda.is_available():
            build = ("this torch is a CPU-only build" if torch.version.cuda is None
                     else f"this torch is built for CUDA {torch.version.cuda}, but no GPU or driver answers")
            raise DeviceError(f"--device {name}: torch {torch.__version__} sees no CUDA GPU ({build}); use "
                              "--device cpu (or auto, which takes a GPU only where there is one), or install a "
                              "CUDA build of torch on a machine with an NVIDIA GPU")
        count = torch.cuda.device_count()
        i = int(index) if index is not None else torch.cuda.current_device()
        if i >= count:
            raise DeviceError(f"--device {name}: this machine has {count} CUDA GPU{'s' if count != 1 else ''} "
                              f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''}); give one of them")
        return torch.device("cuda", i)
    if kind == "mps" and not _mps_available():
        raise DeviceError(f"--device mps: torch {torch.__version__} sees no Apple GPU (MPS); use --device cpu or auto")
    return torch.device(kind)


def available_devices() -> list[str]:
    """What ``--device`` can be on this machine: auto, cpu, each CUDA GPU torch sees, and mps where there is one."""
    return ["auto", "cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())] + (["mps"] if _mps_available()
                                                                                            else [])


def memory_on_device(nbytes: int, device: torch.device) -> bool:
    """Whether a replay memory of ``nbytes`` is mirrored on ``device``: on a CUDA GPU when it takes at most
    ``DEVICE_MEMORY_SHARE`` of the memory free there now (then minibatches are gathered on the GPU and never
    cross the bus); else it stays in host memory only and each minibatch crosses in a pinned, non-blocking copy.
    On a CPU, host memory is the device's. Apple's MPS shares memory with the host, so the host copy serves."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_MEMORY_SHARE * free


def to_device(array, device: torch.device) -> torch.Tensor:
    """A host (numpy) array as a tensor on ``device``: pinned and non-blocking to a CUDA GPU."""
    t = torch.as_tensor(array)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def device_of(net: torch.nn.Module) -> torch.device:
    """The device a network's weights are on."""
    return next(net.parameters()).device


_LABEL_STREAMS: dict = {}


def label_stream(device: torch.device):
    """A context in which a teacher's forward passes on ``device`` run on a CUDA stream of their own (a no-op on
    other devices). The student's updates are queued on the default stream without waiting for them; a label read
    back on that stream would wait for every update queued before it, and the envs, which need the teacher's
    actions, with it. On its own stream it waits only for itself, and the GPU runs both at once. The teacher's
    weights must not change while it labels (a distillation's teacher is fixed; ``place`` waits for them to arrive)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    stream = _LABEL_STREAMS.get(device)
    if stream is None:
        stream = _LABEL_STREAMS[device] = torch.cuda.Stream(device)
    return torch.cuda.stream(stream)


def place(device: torch.device, memory=None, *nets: torch.nn.Module) -> dict:
    """Move ``nets`` to ``device`` and mirror ``memory`` there when it fits (``hardware.memory_on_device``); returns
    what a run's config.json and card record about it: the device, the machine, and where the memory lives."""
    for net in nets:
        net.to(device)
    if nets and device.type == "cuda":  # the weights in place before any stream reads them (``label_stream``)
        torch.cuda.synchronize(device)
    on_device = memory is not None and memory_on_device(memory.nbytes(), device)
    if on_device:
        memory.keep_on(device)
    where = {"device": str(device), "machine": machine(device)}
    if memory is not None:
        where["replay_memory"] = {"on": "device" if on_device else "host", "bytes": int(memory.nbytes())}
    return where


def machine(device: torch.device | str | None = None) -> dict:
    """What a run records about where it ran: platform, CPU cores (the host's and this process's), torch and its
    threads, and the device with its GPU's name and memory where it is one."""
    out = {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
           "cpus_available": cores(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "env_threads": _env_int("WORKBENCH_ENV_THREADS") or cores(), "python": platform.python_version()}
    if device is not None:
        device = torch.device(device)
        out["device"] = str(device)
        if device.type == "cuda":
            props = torch.cuda.get_device_properties(device)
            out.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                       cuda=torch.version.cuda)
    return out
