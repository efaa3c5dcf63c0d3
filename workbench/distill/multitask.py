"""Multi-task policy distillation (Rusu et al. 2016, section 4.3): one student for several games.

The student is a shared trunk with one output head per game; as in Rusu's Multi-Dist, each head is a
128-unit hidden layer and the game's own action layer, so games with different action counts share one
network. Every game has its own teacher, env and replay memory (teacher-driven, epsilon-greedy collection,
outputs stored beside the states); each minibatch comes from a single game and the games take turns.

Observations of the games must share one family and one spatial size (MinAtar's 10x10 grids, or 84x84
Atari frames). Their channel counts may differ (MinAtar: 4 to 10): the trunk reads the largest count, and a
game with fewer channels is padded with zero channels.

The card gives each game's return next to its own teacher's on the same seeds, the % of teacher, and the
geometric mean of those (the % is floored at 1% for the mean, so that one game at zero does not zero it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..agents.common import (check_out, progress, resume_seed, rng_state, seed_everything, set_rng_state,
                             with_preset)
from ..collect import Collector
from ..envs import make_env
from ..evaluate import agreement, evaluate, geometric_mean_pct
from ..memory import ReplayMemory
from ..nets import NetSpec, Policy, _trunk, make_spec
from ..runs import (CheckpointError, Run, _atomic_save_arrays, _read_safetensors, load_optimizer_arrays, machine,
                    optimizer_arrays, set_torch_rng_state, torch_rng_state)
from .losses import get_loss
from .loop import default_lr, fit, load_teacher, teacher_states

FORMAT = "workbench-multitask/1"


class GameView(nn.Module):
    """One game's policy inside a multi-task student: the Policy interface (logits, act, n_params, spec)."""

    act = Policy.act

    def __init__(self, student: "MultiTaskStudent", game: int):
        super().__init__()
        self.student, self.game = student, game
        g = student.games[game]
        self.kind = "pi"
        self.env_id = g["env_id"]
        self.spec = dataclasses.replace(student.trunk_spec, obs_shape=tuple(g["obs_shape"]), n_actions=g["n_actions"])

    @property
    def n_actions(self) -> int:
        return self.spec.n_actions

    @property
    def n_params(self) -> int:
        """What this game needs to act: the shared trunk and its own head."""
        return self.student.trunk_params + sum(p.numel() for p in self.student.heads[self.game].parameters())

    def logits(self, obs) -> torch.Tensor:
        return self.student.logits(obs, self.game)

    def forward(self, obs) -> torch.Tensor:
        return self.logits(obs)


class MultiTaskStudent(nn.Module):
    def __init__(self, trunk_spec: NetSpec, games: list[dict], head_units: int = 128):
        """``trunk_spec``: the shared trunk (its obs_shape has the most channels of any game); ``games``:
        ``{"env_id", "obs_shape", "n_actions"}`` per game, in head order."""
        super().__init__()
        self.trunk_spec, self.games, self.head_units = trunk_spec, [dict(g) for g in games], head_units
        self.trunk, n = _trunk(trunk_spec)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(n, head_units), nn.ReLU(), nn.Linear(head_units, g["n_actions"])) for g in games)

    @property
    def trunk_params(self) -> int:
        return sum(p.numel() for p in self.trunk.parameters())

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def logits(self, obs, game: int) -> torch.Tensor:
        x = torch.as_tensor(obs).float()
        if self.trunk_spec.obs_scale != 1.0:
            x = x / self.trunk_spec.obs_scale
        missing = self.trunk_spec.obs_shape[0] - x.shape[1]
        if missing > 0:  # fewer channels than the widest game: zero channels after the game's own
            x = torch.cat([x, x.new_zeros((x.shape[0], missing) + tuple(x.shape[2:]))], 1)
        return self.heads[game](self.trunk(x))

    def view(self, game: int | str) -> GameView:
        """The policy for one game, by head index or env id."""
        if isinstance(game, str):
            ids = [g["env_id"] for g in self.games]
            if game not in ids:
                raise ValueError(f"this student plays {ids}, not {game!r}")
            game = ids.index(game)
        return GameView(self, game)

    def meta(self) -> dict:
        return {"format": FORMAT, "trunk_spec": self.trunk_spec.to_json(), "games": json.dumps(self.games),
                "head_units": str(self.head_units)}


def save_multitask(path: str | Path, student: MultiTaskStudent) -> None:
    arrays = {k: v.detach().numpy() for k, v in student.state_dict().items()}
    _atomic_save_arrays(Path(path), arrays, student.meta())


def load_multitask(path: str | Path) -> MultiTaskStudent:
    """A multi-task student from its run folder or model.safetensors (weights and JSON only: no code runs)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    arrays, meta = _read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a multi-task student (format {meta.get('format')!r}, expected "
                              f"{FORMAT!r}); single-game policies load with workbench.runs.load_policy")
    student = MultiTaskStudent(NetSpec.from_dict(json.loads(meta["trunk_spec"])), json.loads(meta["games"]),
                               int(meta["head_units"]))
    state = student.state_dict()
    if set(state) != set(arrays) or any(state[k].shape != arrays[k].shape for k in state):
        raise CheckpointError(f"{path}: weights do not match the network its metadata describes")
    student.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in arrays.items()})
    return student


@dataclass(frozen=True)
class MultitaskConfig:
    teachers: tuple[str, ...] = ("minatar-breakout",)
    """Teacher run folders or shipped teacher names, one per game."""
    preset: str = "demo"
    width: float = 1.0
    """Trunk width, a multiplier of the family's base net (MinAtar: 16 conv channels, 128 hidden units)."""
    head_units: int = 128
    """Hidden units of each game's own head (Rusu: 128)."""
    loss: str = "kl"
    tau: float = 0.01
    teacher_epsilon: float = 0.05
    seed: int = 0
    steps_per_game: int = 100_000
    """Env steps collected per game."""
    n_envs: int = 8
    memory_per_game: int = 50_000
    batch_size: int = 256
    lr: float | None = None
    """Adam step size; None: the trunk family's (``default_lr``: 1e-3, 2.5e-4 for a Nature CNN)."""
    updates_per_step: float = 0.5
    """Updates per collected vector step, per game (each on a minibatch of that game)."""
    learning_starts: int = 2_000
    """States per game before the first update."""
    heldout_size: int = 1_000
    log_every: int = 10_000
    eval_episodes: int = 30
    eval_seed: int = 10_000
    checkpoint_every: int = 25_000


MULTITASK_PRESETS = {
    "smoke": dict(steps_per_game=512, n_envs=4, memory_per_game=1_000, batch_size=32, learning_starts=128,
                  heldout_size=128, log_every=256, eval_episodes=2, updates_per_step=1.0, checkpoint_every=256),
    "demo": {},
    "full": dict(steps_per_game=2_000_000, memory_per_game=200_000, updates_per_step=1.0, log_every=100_000,
                 checkpoint_every=200_000),
}


def multitask_config(preset: str, teachers, **overrides) -> MultitaskConfig:
    return with_preset(MultitaskConfig, preset, MULTITASK_PRESETS, fixed={"teachers": tuple(str(t) for t in teachers)},
                       **overrides)


def build_student(teachers: list, specs: list, width: float, head_units: int, seed: int) -> MultiTaskStudent:
    """The shared-trunk student for these teachers; fails clearly where their observations cannot share one."""
    families = {t.spec.family for t in teachers}
    if len(families) != 1:
        raise ValueError(f"multi-task distillation needs teachers of one observation family, got {sorted(families)}; "
                         "distil MinAtar games together, or Atari games together")
    spatial = {tuple(s.obs_shape[1:]) for s in specs}
    if len(spatial) != 1:
        raise ValueError(f"the games' observations differ in size {sorted(spatial)}; they must share one")
    widest = max(s.obs_shape[0] for s in specs)  # channels, or features of a vector observation
    shape = (widest,) + tuple(specs[0].obs_shape[1:])
    trunk_spec = make_spec(shape, 1, families.pop(), width, teachers[0].spec.obs_scale)
    games = [{"env_id": s.env_id, "obs_shape": list(s.obs_shape), "n_actions": s.n_actions} for s in specs]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MultiTaskStudent(trunk_spec, games, head_units)


def width_for_share(teachers, share: float, head_units: int = 128) -> float:
    """The widest trunk (to 0.01) whose student has at most ``share`` of its teachers' summed params: the size
    knob in the terms Rusu uses (a student smaller than the teachers it replaces)."""
    if not 0 < share < 1:
        raise ValueError(f"student share {share} must lie between 0 and 1 (of the teachers' summed params)")
    loaded = [load_teacher(t) for t in teachers]
    ts, specs = [t for t, _, _ in loaded], [s for _, _, s in loaded]
    budget = share * sum(t.n_params for t in ts)

    def params(width: float) -> int:
        return build_student(ts, specs, width, head_units, 0).n_params

    lo, hi = 0.01, 1.0
    if params(lo) > budget:
        raise ValueError(f"even the narrowest trunk has {params(lo):,} params, over {share:.1%} of the teachers' "
                         f"{sum(t.n_params for t in ts):,}; ask for a larger share or fewer head units")
    while params(hi) <= budget:
        lo, hi = hi, hi * 2
    while hi - lo > 0.01:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if params(mid) <= budget else (lo, mid)
    return max(0.01, math.floor(lo * 100) / 100)  # params grow with width: rounding down stays in budget


def distill_multitask(config: MultitaskConfig, out: str | Path, resume: bool = False, progress_bar: bool = True,
                      callback=None) -> dict:
    """Distil several teachers into one student; writes the run folder ``out`` and returns its card.

    Resume keeps the student, its optimizer and the counters; the replay memories are not checkpointed (five
    games' memories would make every checkpoint hundreds of MB) and refill from fresh teacher play.
    """
    if len(config.teachers) < 2:
        raise ValueError("multi-task distillation needs at least two teachers (one per game)")
    seed_everything(config.seed)
    loaded = [load_teacher(t) for t in config.teachers]
    teachers, specs = [t for t, _, _ in loaded], [s for _, _, s in loaded]
    ids = [s.env_id for s in specs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"two teachers play the same game ({ids}); give one teacher per game")
    for t in teachers:
        t.eval()
    student = build_student(teachers, specs, config.width, config.head_units, config.seed)
    loss_fn = get_loss(config.loss, config.tau)
    tau = config.tau if config.loss == "kl" else 1.0  # for the agreement's KL, as in the single-game loop
    if config.lr is None:  # the run's config.json records the step size it used
        config = dataclasses.replace(config, lr=default_lr(student.trunk_spec.family))
    optimizer = torch.optim.Adam(student.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)

    run = Run(check_out(out, resume))
    run.write_config(config, games=ids)

    step, updates, wall_before = 0, 0, 0.0  # step: env steps per game
    if resume and run.has_checkpoint():
        arrays, state = run.load_checkpoint()
        student.load_state_dict({k[8:]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("student.")})
        load_optimizer_arrays(optimizer, arrays, state["optimizer"])
        step, updates, wall_before = state["step"], state["updates"], state["wall_seconds"]
        set_rng_state(rng, state["rng"])
        set_torch_rng_state(arrays["torch_rng"])

    games = []
    for g, (teacher, spec) in enumerate(zip(teachers, specs)):
        envs, _ = make_env(spec.env_id, config.n_envs, config.seed + 97 * g, **spec.settings)
        obs, _ = envs.reset(seed=resume_seed(config.seed + 97 * g, step))
        memory = ReplayMemory(config.memory_per_game, spec.obs_shape, spec.obs_dtype, config.n_envs,
                              spec.settings.get("stack_num", 1), extras={"teacher": ((spec.n_actions,), np.float32)})
        held = teacher_states(teacher, spec, config.heldout_size, config.seed + 777_777 + g, config.teacher_epsilon)
        games.append({"teacher": teacher, "spec": spec, "envs": envs, "memory": memory, "held": held,
                      "collector": Collector(envs, spec, memory, obs, clip_rewards=False), "losses": []})

    def collect(game: dict) -> None:
        teacher, n_actions, labels = game["teacher"], game["spec"].n_actions, {}

        def act(obs):
            with torch.no_grad():
                labels["teacher"] = teacher.logits(obs).numpy()
            a = labels["teacher"].argmax(-1)
            explore = rng.random(len(a)) < config.teacher_epsilon
            return np.where(explore, rng.integers(0, n_actions, len(a)), a)

        game["collector"].step(act, lambda obs: labels)

    def update(g: int) -> None:
        obs_B, extras = games[g]["memory"].sample_states(config.batch_size, rng)
        games[g]["losses"].append(fit(optimizer, loss_fn, student.logits(obs_B, g), extras["teacher"]))

    t0, owed, filled = time.time(), 0.0, 0
    next_log, next_ckpt = step + config.log_every, step + config.checkpoint_every
    bar = progress(config.steps_per_game * len(games), step * len(games), f"multitask {len(games)} games", progress_bar)
    while step < config.steps_per_game:
        for game in games:  # every game advances one vector step
            collect(game)
        step += config.n_envs
        filled += config.n_envs
        bar.update(config.n_envs * len(games))
        if filled >= config.learning_starts:
            owed += config.updates_per_step
            while owed >= 1:  # games take turns; each minibatch is one game's
                owed -= 1
                for g in range(len(games)):
                    update(g)
                    updates += 1

        wall = wall_before + time.time() - t0
        done = step >= config.steps_per_game
        if step >= next_log or done:
            row = {"wall_seconds": round(wall, 2), "charts/updates": updates}
            for game in games:
                env_id = game["spec"].env_id
                obs_N, _ = game["held"]
                row[f"{env_id}/loss"] = float(np.mean(game["losses"])) if game["losses"] else None
                row[f"{env_id}/agreement"] = agreement(student.view(env_id), game["teacher"], obs_N, tau)["agreement"]
                game["losses"] = []
            run.log(step, **row)
            if callback:
                callback({"step": step, **row})
            next_log += config.log_every
        if step >= next_ckpt or done:
            arrays, opt_meta = optimizer_arrays(optimizer)
            arrays.update({f"student.{k}": v.detach().numpy() for k, v in student.state_dict().items()})
            arrays["torch_rng"] = torch_rng_state()
            run.save_checkpoint(arrays, {"step": step, "updates": updates, "wall_seconds": wall,
                                         "rng": rng_state(rng), "optimizer": opt_meta})
            next_ckpt += config.checkpoint_every
    bar.close()
    for game in games:
        game["envs"].close()
    wall = wall_before + time.time() - t0

    # -- each game: the student's head against its own teacher, on the same seeds --------------------------
    per_game = {}
    for g, game in enumerate(games):
        spec, view = game["spec"], student.view(g)
        s_eval = evaluate(view, spec.env_id, config.eval_episodes, config.eval_seed, spec.settings)
        t_eval = evaluate(game["teacher"], spec.env_id, config.eval_episodes, config.eval_seed, spec.settings)
        per_game[spec.env_id] = {
            "return_mean": s_eval.mean, "return_std": s_eval.std, "teacher_return_mean": t_eval.mean,
            "teacher_return_std": t_eval.std,
            "pct_of_teacher": 100.0 * s_eval.mean / t_eval.mean if t_eval.mean > 0 else None,
            "agreement": agreement(view, game["teacher"], game["held"][0], tau)["agreement"],
            "teacher_params": game["teacher"].n_params, "params_to_act": view.n_params,
        }
    save_multitask(run.file("model.safetensors"), student)
    teacher_sum = sum(t.n_params for t in teachers)
    card = {
        "algo": "multitask-distill", "games": ids, "teachers": list(config.teachers), "per_game": per_game,
        "geomean_pct_of_teacher": geometric_mean_pct([r["pct_of_teacher"] for r in per_game.values()]),
        "params": student.n_params, "teachers_params_sum": teacher_sum, "compression": student.n_params / teacher_sum,
        "width": config.width, "head_units": config.head_units, "loss": config.loss, "tau": config.tau,
        "preset": config.preset, "seed": config.seed, "env_steps_per_game": step, "updates": updates,
        "wall_seconds": round(wall, 1), "eval_seed": config.eval_seed, "eval_episodes": config.eval_episodes,
        "machine": machine(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    run.write_card(card)
    return card


def per_game_table(card: dict):
    """One row per game: student and teacher return, % of teacher, agreement; the geometric mean last."""
    import pandas as pd

    rows = [{"game": k.split("/")[-1], "student": r["return_mean"], "teacher": r["teacher_return_mean"],
             "% of teacher": r["pct_of_teacher"], "agreement": r["agreement"]} for k, r in card["per_game"].items()]
    rows.append({"game": "geometric mean", "% of teacher": card["geomean_pct_of_teacher"]})
    return pd.DataFrame(rows).round(3)
