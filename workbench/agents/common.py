"""What every training loop shares: config presets, seeding, the run folder, progress, the closing card."""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..envs import EnvSpec
from ..evaluate import evaluate
from ..runs import Run, machine, save_policy

PRESETS = ("smoke", "demo", "full")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def with_preset(cls, preset: str, table: dict, family: str | None = None, fixed: dict | None = None, **overrides):
    """Build config ``cls``: class defaults, then ``table[preset]`` (its ``[family]`` entry where given), then
    ``fixed`` (identity fields such as env_id), then the non-None ``overrides``; unknown fields fail."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    fields = {f.name for f in dataclasses.fields(cls)}
    bad = set(overrides) - fields
    if bad:
        raise ValueError(f"{cls.__name__} has no field(s) {sorted(bad)}; fields: {sorted(fields)}")
    entry = table[preset] if family is None else table[preset].get(family, {})
    values = {**entry, **{k: v for k, v in overrides.items() if v is not None}}
    return cls(preset=preset, **(fixed or {}), **values)


def parse_overrides(cls, items: list[str] | None, fixed: tuple[str, ...] = ("env_id", "preset", "seed")) -> dict:
    """``["lr=1e-3", "anneal_lr=false"]`` -> ``{"lr": 0.001, "anneal_lr": False}``, each value converted to the
    type of ``cls``'s field; an unknown field, a ``fixed`` one (it has its own flag) or a value of the wrong type
    fails with a message naming it."""
    import typing

    hints = {k: _settable(v) for k, v in typing.get_type_hints(cls).items() if k not in fixed}
    hints = {k: v for k, v in hints.items() if v is not None}
    out = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in hints:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(hints)}")
        kind, text = hints[key], text.strip()
        if kind is bool and text.lower() in ("true", "false"):
            out[key] = text.lower() == "true"
        elif kind is int and text.lstrip("-").isdigit():
            out[key] = int(text)
        elif kind is float and _is_float(text):
            out[key] = float(text)
        elif kind is str:
            out[key] = text
        else:
            raise ValueError(f"--set {item!r}: {key} takes a {kind.__name__}, got {text!r}")
    return out


def _settable(hint) -> type | None:
    """The plain type a ``--set`` value converts to: bool, int, float or str, also where the field may be None
    (``lr: float | None``, None meaning "the default for this network"); None for any other field."""
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    kind = args[0] if len(args) == 1 and len(typing.get_args(hint)) == 2 else hint
    return kind if kind in (bool, int, float, str) else None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class EpisodeTracker:
    """Running return and length per env of a vector env; yields the episodes that end."""

    def __init__(self, n_envs: int):
        self.ret = np.zeros(n_envs)
        self.len = np.zeros(n_envs, dtype=np.int64)

    def update(self, reward: np.ndarray, done: np.ndarray) -> list[tuple[float, int]]:
        self.ret += reward
        self.len += 1
        ended = [(float(self.ret[i]), int(self.len[i])) for i in np.flatnonzero(done)]
        self.ret[done], self.len[done] = 0.0, 0
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
        **(extra or {}),
    }
    run.write_card(card)
    return card


def check_out(out: str | Path, resume: bool) -> Path:
    """``out`` as a Path, if a run may be written there: never over a finished run, resume an interrupted one."""
    out = Path(out)
    if (out / "card.json").exists() and not resume:
        raise FileExistsError(f"{out} already holds a finished run; choose another --out or delete it")
    if (out / "checkpoint.json").exists() and not resume:
        raise FileExistsError(f"{out} holds an interrupted run; continue it with --resume, or choose another --out")
    return out


# Config fields that change how a run reports itself, not what it learns.
BOOKKEEPING = ("checkpoint_every", "log_every")
# What a resumed run may change: how far it goes, and its bookkeeping (a session that must stop soon checkpoints
# more often); everything else would make the second half another run's.
RESUMABLE = ("total_steps",) + BOOKKEEPING


def open_run(out: str | Path, config, spec: EnvSpec, resume: bool) -> Run:
    out = check_out(out, resume)
    run = Run(out)
    if resume and (out / "config.json").exists():
        saved = saved_config(run.config, config)
        mine = {**dataclasses.asdict(config), "env_spec": spec.to_dict()}
        differ = {k for k in mine if k not in RESUMABLE and saved.get(k) != _jsonish(mine[k])}
        if differ:
            raise ValueError(f"--resume with a different config than {out}/config.json: {sorted(differ)} differ")
    run.write_config(config, env_spec=spec.to_dict())
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


def rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state
