"""What every training loop shares: config presets, seeding, the run folder, progress, the closing card."""

from __future__ import annotations

import dataclasses
import operator
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..envs import EnvSpec
from ..evaluate import evaluate
from ..hardware import machine
from ..runs import Run, read_json, save_policy



def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class EpisodeTracker:
    """Running return and length per env of a vector env; yields the episodes that end. Kept in Python lists: for
    a few to a few hundred envs a pass over two lists costs less than the numpy calls it replaces (each of those
    costs microseconds between MinAtar's env steps). Returns add up in float64, as numpy's would."""

    def __init__(self, n_envs: int):
        self.ret = [0.0] * n_envs
        self.len = [0] * n_envs

    def update(self, reward: np.ndarray, done: np.ndarray, part: slice = slice(None),
               truncated: np.ndarray | None = None) -> list[tuple[float, int]]:
        """After a step of the envs in ``part`` (all by default): the episodes that ended, (return, length). An
        episode ended where ``done`` or ``truncated`` (given apart, it saves the caller an array op)."""
        ret = list(map(operator.add, self.ret[part], np.asarray(reward, dtype=np.float64).tolist()))
        length = [n + 1 for n in self.len[part]]
        d = np.asarray(done).tolist()
        c = d if truncated is None else np.asarray(truncated).tolist()
        ended = []
        if True in d or True in c:
            for i, (x, y) in enumerate(zip(d, c)):
                if x or y:
                    ended.append((ret[i], length[i]))
                    ret[i], length[i] = 0.0, 0
        self.ret[part], self.len[part] = ret, length
        return ended


def progress(total: int, initial: int, desc: str, enabled: bool = True):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled, smoothing=0.1,
                mininterval=1.0)


def finish_run(
    run: Run, policy, config, spec: EnvSpec, algo: str, frames: int, wall_seconds: float, extra: dict | None = None,
) -> dict:
    """Evaluate on fixed seeds, save the model and write card.json; returns the card."""
    result = evaluate(policy, spec.env_id, config.eval_episodes, config.eval_seed, spec.settings)
    save_policy(run.file("model.safetensors"), policy, env_id=spec.env_id, algo=algo)
    card = {
        "env_id": spec.env_id, "algo": algo, "preset": config.preset, "seed": config.seed,
        "params": policy.n_params, "net": dataclasses.asdict(policy.spec), "kind": policy.kind,
        "env_steps": frames, "frames": frames * int(spec.settings.get("frameskip", 1)),
        "wall_seconds": round(wall_seconds, 1), "eval_seed": config.eval_seed,
        **result.summary("return"), "returns": result.returns.tolist(), "env_settings": spec.settings, "action_meanings": list(spec.action_meanings),
        "machine": machine(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **(extra or {}),  # a loop's own fields, and where it ran (``hardware.place``: device, machine)
    }
    run.write_card(card)
    return card


RUN_FILES = ("config.json", "metrics.jsonl", "model.safetensors", "card.json", "checkpoint.json",
             "checkpoint.safetensors")


def check_out(out: str | Path, resume: bool) -> Path:
    """``out`` as a Path, if a run may be written there: a new or empty folder, or with ``resume`` one that holds
    a run to go on with. A folder holding any earlier run, finished or not (or one killed before its first
    checkpoint), is never written into without ``resume``: its metrics would be mixed with this run's."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file, not a run folder; choose another --out")
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not resume:
        what = "a finished run" if "card.json" in found else "an earlier run that did not finish"
        raise FileExistsError(f"{out} already holds {what} ({', '.join(found)}); continue it with --resume, or choose "
                              "another --out (or delete the folder)")
    if found and resume and "config.json" not in found:
        raise FileExistsError(f"{out} holds run files ({', '.join(found)}) but no config.json, so nothing says how "
                              "they were made and they cannot be resumed; choose another --out (or delete the folder)")
    return out


# Config fields that change how a run reports itself, not what it learns.
BOOKKEEPING = ("checkpoint_every", "log_every", "device")
# What a resumed run may change: how far it goes, its bookkeeping (a session that must stop soon checkpoints more
# often) and where it runs (a run started on a GPU finishes on a CPU); everything else would make the second half
# another run's.
RESUMABLE = ("total_steps", "steps_per_game", "machine", "replay_memory") + BOOKKEEPING


def resumed_defaults(out: str | Path, config, resume: bool, fields: tuple[str, ...] = ("lr", "tau")):
    """``config`` with the defaults a resumed run settled for itself: a field left None (the step size, the
    temperature) takes the value its config.json recorded, so that a later change of default never turns a resume
    into another recipe."""
    path = Path(out) / "config.json"
    if not resume or not path.exists():
        return config
    saved = read_json(path)
    return dataclasses.replace(config, **{f: saved[f] for f in fields
                                         if hasattr(config, f) and getattr(config, f) is None and f in saved})


def open_run(out: str | Path, config, spec: EnvSpec | None, resume: bool, **extra) -> Run:
    """The run folder for ``config``, after ``check_out``; a resumed run must have been made with the same config
    (but for ``RESUMABLE`` fields), else it is refused by name. Writes config.json (with ``extra`` beside it)."""
    out = check_out(out, resume)
    extra = {**({"env_spec": spec.to_dict()} if spec is not None else {}), **extra}
    run = Run(out)
    if resume and (out / "config.json").exists():
        saved = saved_config(run.config, config)
        mine = {**dataclasses.asdict(config), **extra}
        differ = {k for k in mine if k not in RESUMABLE and saved.get(k) != _jsonish(mine[k])}
        if differ:
            said = "; ".join(f"{k}: {saved.get(k)!r} there, {_jsonish(mine[k])!r} now" for k in sorted(differ))
            raise ValueError(f"--resume of {out} with another recipe than its config.json records (another "
                             f"{', '.join(sorted(differ))}: {said}); resume with the same settings, or give this run "
                             "another --out")
    run.write_config(config, **extra)
    return run


def saved_config(saved: dict, config) -> dict:
    """A run's config.json as today's config class reads it: a field added after the run was written (say
    ``ema``) takes its default, which is what the run did."""
    defaults = {f.name: _jsonish(f.default) for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
    return {**defaults, **saved}


def _jsonish(v: Any) -> Any:
    import json

    return json.loads(json.dumps(v))


def resume_seed(seed: int, step: int) -> int:
    """The env seed of a run's envs when it (re)starts at ``step``: ``seed`` itself for a fresh run, else a mix of
    both below 2**30, a range every env accepts with room for one seed per env above it. (``seed + 1_000_003 *
    step`` left 2**32 after 4,295 steps: "Seed must be between 0 and 2**32 - 1". A full 32-bit mix failed half
    the ALE resumes: ale-py's vector env seeds its envs ``seed, seed + 1, ...`` as C ints, below 2**31.)"""
    if step == 0:
        return seed
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0] >> 2)
