"""Run folders, checkpoints and metrics. Every write is atomic (write a temp file, then rename).

A run folder holds:
- ``config.json``: the config dataclass of the loop that made it, plus the env spec;
- ``metrics.jsonl``: one JSON object per logged step, namespaced keys (``charts/episodic_return``);
- ``model.safetensors``: the policy's weights, with the NetSpec and kind in the header metadata;
- ``card.json``: the summary (env, algo, params, frames, wall seconds, eval return mean/std/n, machine);
- ``checkpoint.safetensors`` + ``checkpoint.json``: what ``--resume`` needs (weights, optimiser, memory, rng).

Checkpoints are safetensors plus JSON: loading one never unpickles or executes anything.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file as np_load_file
from safetensors.numpy import save_file as np_save_file

from .nets import NetSpec, Policy, build

FORMAT = "workbench-policy/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded, with what is wrong and what to do."""


# -- atomic writes -----------------------------------------------------------------------------------------
def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def read_json(path: str | Path) -> dict:
    """A run folder's JSON file; a missing or unreadable one fails naming the file and what to do."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {path.parent} a workbench run folder?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON (cut short by a crash or an edit? {exc}); restore it from a copy, "
                         "or delete the run folder and run again") from None


def _json_default(o):
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _atomic_save_arrays(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        try:
            np_save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, tmp, metadata=metadata)
        except SafetensorError as exc:  # safetensors reports a full disk as its own error: make it the OSError it is
            code = re.search(r"os error (\d+)", str(exc))
            errno_ = int(code.group(1)) if code else 5
            raise OSError(errno_, os.strerror(errno_), str(path)) from exc
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Arrays and header metadata; a clear CheckpointError for pickles, truncation and other garbage."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") or head[:2] == b"PK":
        raise CheckpointError(
            f"{path} looks like a pickle or a torch.save zip. The workbench never unpickles (it can run code); "
            "convert the weights to safetensors in a trusted session (safetensors.torch.save_file)."
        )
    try:
        arrays = np_load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {exc}") from exc
    return arrays, meta


# -- policies ----------------------------------------------------------------------------------------------
def save_policy(path: str | Path, policy: Policy, **meta: Any) -> None:
    """Weights plus the NetSpec and kind that rebuild the network."""
    arrays = {k: v.detach().cpu().numpy() for k, v in policy.state_dict().items()}
    header = {"format": FORMAT, "net_spec": policy.spec.to_json(), "kind": policy.kind,
              "meta": json.dumps(meta, default=_json_default)}
    _atomic_save_arrays(Path(path), arrays, header)


def load_policy(path: str | Path, expect: NetSpec | None = None) -> Policy:
    """Rebuild a policy from ``model.safetensors`` (or a run folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    arrays, meta = _read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not a workbench policy (header format {meta.get('format')!r}, "
            f"expected {FORMAT!r}). Wrap a foreign network with an adapter that exposes logits(obs)."
        )
    spec = NetSpec.from_dict(json.loads(meta["net_spec"]))
    if expect is not None and (expect.family, expect.obs_shape, expect.n_actions) != (
        spec.family, spec.obs_shape, spec.n_actions
    ):
        raise CheckpointError(
            f"{path} holds a {spec.family} net for obs {spec.obs_shape} with {spec.n_actions} actions; "
            f"expected a {expect.family} net for obs {expect.obs_shape} with {expect.n_actions} actions"
        )
    policy = build(spec, meta.get("kind", "pi"))
    state = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    try:
        policy.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the network its header describes: {exc}") from exc
    policy.eval()
    return policy


def policy_meta(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    _, meta = _read_safetensors(path)
    return json.loads(meta.get("meta", "{}"))


def load_run_policy(path: str | Path) -> tuple[Policy, str | None, dict]:
    """(policy, env id, env settings) of a run folder: the env its config.json (or card) records, checked against
    the env its model was saved for, so that a model of another game left in the folder is refused by name."""
    folder = Path(path)
    policy = load_policy(folder)
    recorded = policy_meta(folder).get("env_id")
    if not folder.is_dir():
        return policy, recorded, {}
    config = read_json(folder / "config.json") if (folder / "config.json").exists() else {}
    env_id = config.get("env_spec", {}).get("env_id") or config.get("env_id")
    if env_id is None and (folder / "card.json").exists():
        env_id = read_json(folder / "card.json").get("env_id")
    if recorded and env_id and recorded != env_id:
        raise CheckpointError(f"{folder}/model.safetensors is a policy for {recorded}, but the run folder records "
                              f"{env_id}: a model of another run was put in this folder; put back this run's model "
                              "or give the folder the model came from")
    return policy, env_id or recorded, config.get("env_spec", {}).get("settings", {})


# -- optimiser state as tensors (no pickles in resume checkpoints either) ----------------------------------
DEVICE_FLAGS = ("capturable", "foreach", "fused")  # an optimizer's settings that follow the device it runs on


def optimizer_arrays(opt: torch.optim.Optimizer, prefix: str = "optim") -> tuple[dict, dict]:
    sd = opt.state_dict()
    arrays = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            arrays[f"{prefix}.{idx}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).cpu().numpy()
    return arrays, {"param_groups": sd["param_groups"]}


def load_optimizer_arrays(opt: torch.optim.Optimizer, arrays: dict, meta: dict, prefix: str = "optim") -> None:
    state: dict[int, dict] = {}
    for key, v in arrays.items():
        if key.startswith(prefix + "."):
            _, idx, k = key.split(".", 2)
            state.setdefault(int(idx), {})[k] = torch.from_numpy(v.copy())
    # How the optimizer runs is this device's, not the file's: a run made capturable on a GPU (its step counts on
    # the device, for a CUDA graph: ``engine.StudentUpdater``) resumes on a CPU; torch places the step counts by it.
    saved_groups = meta["param_groups"]
    groups = [{**saved, **{k: mine[k] for k in DEVICE_FLAGS if k in mine}}
              for saved, mine in zip(saved_groups, opt.param_groups)]
    groups += saved_groups[len(groups):]  # a file with more groups: torch's own load refuses it by name
    opt.load_state_dict({"state": state, "param_groups": groups})


# -- run folders -------------------------------------------------------------------------------------------
class Run:
    """One run folder. ``log`` appends metrics (flushed, fsynced); every other file is replaced atomically."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.segment = self._last_segment() + 1

    def _last_segment(self) -> int:
        seg = -1
        for row in self.read_metrics_rows():
            seg = max(seg, row.get("segment", 0))
        return seg

    # files
    def file(self, name: str) -> Path:
        return self.path / name

    def write_config(self, config: Any, **extra: Any) -> None:
        body = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        atomic_write_json(self.file("config.json"), {**body, **extra})

    def read_json(self, name: str) -> dict:
        return read_json(self.file(name))

    @property
    def config(self) -> dict:
        return self.read_json("config.json")

    @property
    def card(self) -> dict:
        return self.read_json("card.json")

    def write_card(self, card: dict) -> None:
        atomic_write_json(self.file("card.json"), card)

    # metrics
    def log(self, step: int, **metrics: Any) -> None:
        """Append one line; a metrics line is never rewritten, resumed segments carry a higher ``segment``."""
        row = {"step": int(step), "segment": self.segment, "time": time.time(), **metrics}
        line = json.dumps(row, default=_json_default) + "\n"
        with open(self.file("metrics.jsonl"), "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def read_metrics_rows(self) -> list[dict]:
        p = self.file("metrics.jsonl")
        if not p.exists():
            return []
        rows = []
        for line in p.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash mid-write; the rest stands
        return rows

    def metrics(self):
        """Metrics as a DataFrame; where a resumed segment logged a step again, its newer row wins."""
        import pandas as pd

        df = pd.DataFrame(self.read_metrics_rows())
        if df.empty:
            return df
        return df.sort_values(["step", "segment"]).drop_duplicates(
            subset=["step"] + [c for c in ("kind",) if c in df], keep="last"
        ).reset_index(drop=True)

    # checkpoints
    def save_checkpoint(self, arrays: dict[str, np.ndarray], state: dict) -> None:
        """Resume state: arrays to safetensors, the rest (counters, rng) to JSON; the JSON lands last."""
        _atomic_save_arrays(self.file("checkpoint.safetensors"), arrays, {"format": "workbench-checkpoint/1"})
        atomic_write_json(self.file("checkpoint.json"), state)

    def has_checkpoint(self) -> bool:
        return self.file("checkpoint.json").exists() and self.file("checkpoint.safetensors").exists()

    def load_checkpoint(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays, meta = _read_safetensors(self.file("checkpoint.safetensors"))
        if meta.get("format") != "workbench-checkpoint/1":
            raise CheckpointError(f"{self.file('checkpoint.safetensors')} is not a workbench resume checkpoint")
        return arrays, self.read_json("checkpoint.json")


class Checkpointer:
    """A run's resume state, saved and restored by name: each network's weights as ``NAME.<state-dict key>``,
    each optimizer's as ``NAME.<param index>.<state key>``, each memory's arrays as ``NAME.<array>``, the torch RNG
    as ``torch_rng``; counters and the numpy RNG go to checkpoint.json. Names are split at the first dot, never
    sliced off by length, so a new part of a run's state is one more name."""

    def __init__(self, run: Run, nets: dict | None = None, optimizers: dict | None = None,
                 memories: dict | None = None, rng: np.random.Generator | None = None):
        self.run, self.rng = run, rng
        self.nets, self.optimizers, self.memories = dict(nets or {}), dict(optimizers or {}), dict(memories or {})
        names = [*self.nets, *self.optimizers, *self.memories]
        if len(set(names)) != len(names) or any("." in n for n in names) or "torch_rng" in names:
            raise ValueError(f"checkpoint part names must be distinct, dot-free and not 'torch_rng': {names}")

    def save(self, counters: dict) -> None:
        arrays, optim_meta = {"torch_rng": torch_rng_state()}, {}
        for name, net in self.nets.items():
            arrays.update({f"{name}.{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()})
        for name, opt in self.optimizers.items():
            opt_arrays, optim_meta[name] = optimizer_arrays(opt, prefix=name)
            arrays.update(opt_arrays)
        for name, memory in self.memories.items():
            arrays.update({f"{name}.{k}": v for k, v in memory.state_arrays().items()})
        state = {**counters, "optimizers": optim_meta}
        if self.rng is not None:
            state["rng"] = self.rng.bit_generator.state
        self.run.save_checkpoint(arrays, state)

    def restore(self) -> dict | None:
        """Load every part into its object; returns the counters (None when the run has no checkpoint)."""
        if not self.run.has_checkpoint():
            return None
        arrays, state = self.run.load_checkpoint()
        parts: dict[str, dict] = {}
        for key, value in arrays.items():
            name, _, rest = key.partition(".")
            parts.setdefault(name, {})[rest] = value
        # An optimizer saved before its first step has no tensors yet; nets and memories always have some.
        missing = [n for n in [*self.nets, *self.memories] if n not in parts]
        if missing:
            raise CheckpointError(f"{self.run.file('checkpoint.safetensors')} holds no {', '.join(missing)} (it has "
                                  f"{', '.join(sorted(parts))}): it was not written by this kind of run; resume it "
                                  "with the command that made it, or give this run another --out")
        for name, net in self.nets.items():
            net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in parts[name].items()})
        optim_meta = state.get("optimizers") or {"optim": state.get("optimizer")}  # one optimizer, older runs
        for name, opt in self.optimizers.items():
            load_optimizer_arrays(opt, arrays, optim_meta[name], prefix=name)
        for name, memory in self.memories.items():
            memory.load_state_arrays(parts[name])
        if self.rng is not None:
            self.rng.bit_generator.state = state["rng"]
        set_torch_rng_state(arrays["torch_rng"])
        return state


def list_runs(root: str | Path = "runs"):
    """Every run folder under ``root`` with a card, as a DataFrame (one row per run, card fields as columns)."""
    import pandas as pd

    rows = []
    for card in sorted(Path(root).glob("**/card.json")):
        d = json.loads(card.read_text())
        rows.append({"run": str(card.parent), **{k: v for k, v in d.items() if not isinstance(v, (dict, list))}})
    return pd.DataFrame(rows)


def torch_rng_state() -> np.ndarray:
    return torch.get_rng_state().numpy()


def set_torch_rng_state(a: np.ndarray) -> None:
    torch.set_rng_state(torch.from_numpy(a.copy()))
