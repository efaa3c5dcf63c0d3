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
from typing import Literal

import numpy as np
import torch
from torch import nn

from ..agents.common import open_run, progress, resume_seed, resumed_defaults, seed_everything
from ..collect import Collector
from ..config import ConfigError, OnDevice, Preset, check, with_preset
from ..envs import make_env
from ..evaluate import evaluate, geometric_mean_pct
from ..memory import ReplayMemory, stack_padding
from ..nets import NetSpec, Policy, _trunk, make_spec
from ..hardware import device_of, memory_on_device, place, resolve_device
from ..runs import Checkpointer, CheckpointError, _atomic_save_arrays, _read_safetensors
from .engine import (Schedule, collect_step, default_tau, fit, heldout, load_teacher, score_card,
                     teacher_states)
from .balanced import adaptive_mix, fixed_mix
from .loop import Loss, default_lr
from .losses import get_loss

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
        x = torch.as_tensor(obs, device=device_of(self)).float()
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
    arrays = {k: v.detach().cpu().numpy() for k, v in student.state_dict().items()}
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
class MultitaskConfig(OnDevice):
    teachers: tuple[str, ...] = ("minatar-breakout", "minatar-freeway")
    """Teacher run folders or shipped teacher names, one per game (at least two)."""
    preset: Preset = "demo"
    """Which preset filled the defaults: smoke, demo or full."""
    width: float = 1.0
    """Trunk width, a multiplier of the family's base net (MinAtar: 16 conv channels, 128 hidden units)."""
    head_units: int = 128
    """Hidden units of each game's own head (Rusu: 128)."""
    loss: Loss = "kl"
    """nll, mse or kl."""
    tau: float | None = None
    """KL temperature applied to the teachers; None: by their outputs (0.01 for DQN Q-values, 1 for PPO logits)."""
    teacher_epsilon: float = 0.05
    """Epsilon of the teachers' epsilon-greedy acting (Rusu: 0.05)."""
    seed: int = 0
    """Seeds torch, numpy and the envs: same seed, same numbers on the same machine."""
    steps_per_game: int = 100_000
    """Env steps collected per game."""
    n_envs: int = 8
    """Parallel envs per game."""
    memory_per_game: int = 50_000
    """Replay capacity per game, in states."""
    batch_size: int = 256
    """States per update (each minibatch from one game)."""
    lr: float | None = None
    """Adam step size; None: the trunk family's (``default_lr``: 1e-3, 2.5e-4 for a Nature CNN)."""
    updates_per_step: float = 0.5
    """Updates per collected vector step, per game (each on a minibatch of that game)."""
    learning_starts: int = 2_000
    """States per game before the first update."""
    heldout_size: int = 1_000
    """Teacher-driven states per game (other seeds) on which agreement is measured."""
    log_every: int = 10_000
    """Env steps per game between metrics lines."""
    eval_episodes: int = 30
    """Episodes per game of the final evaluation of student and teachers."""
    eval_seed: int = 10_000
    """Env seed of the first evaluation episode."""
    checkpoint_every: int = 25_000
    """Env steps per game between resume checkpoints."""
    balance: Literal["none", "fixed", "adaptive"] = "none"
    """Balance the games (distill.balanced's rules, each game a domain): the run's queries (steps_per_game for every
    game, in all) are spent in balance_stages stages, and before each later stage the games' deficits (1 - held-out
    agreement) set the next stage's share of collection and of updates per game. none: every game the same share."""
    balance_stages: int = 4
    """Stages of a balanced run; the first gives every game the same share."""

    def __post_init__(self):
        object.__setattr__(self, "teachers", tuple(str(t) for t in self.teachers))
        check(self, positive=("width", "head_units", "tau", "balance_stages", "steps_per_game", "n_envs", "memory_per_game", "batch_size",
                              "lr", "updates_per_step", "heldout_size", "log_every", "eval_episodes",
                              "checkpoint_every"),
              non_negative=("learning_starts", "seed", "eval_seed"), probability=("teacher_epsilon",))
        if len(self.teachers) < 2:
            raise ConfigError(f"multi-task distillation needs at least two teachers, one per game (--teachers), got "
                              f"{list(self.teachers)}")
        if len(set(self.teachers)) != len(self.teachers):
            raise ConfigError(f"--teachers names a teacher twice: {list(self.teachers)}")


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
    seed_everything(config.seed)
    device = resolve_device(config.device)
    loaded = [load_teacher(t) for t in config.teachers]
    teachers, cards, specs = [t for t, _, _ in loaded], [c for _, c, _ in loaded], [s for _, _, s in loaded]
    ids = [s.env_id for s in specs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"two teachers play the same game ({ids}); give one teacher per game")
    for t in teachers:
        t.eval()
    student = build_student(teachers, specs, config.width, config.head_units, config.seed)
    # Defaults that depend on the teachers or the student are settled here, so the run's config.json records them
    # (a resumed run keeps those it settled).
    config = resumed_defaults(out, config, resume)
    config = dataclasses.replace(config, lr=config.lr or default_lr(student.trunk_spec.family),
                                 tau=config.tau or teachers_tau(cards))
    loss_fn = get_loss(config.loss, config.tau)
    where = place(device, None, student, *teachers)
    optimizer = torch.optim.Adam(student.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)

    run = open_run(out, config, None, resume, games=ids, **where)
    checkpointer = Checkpointer(run, nets={"student": student}, optimizers={"optim": optimizer}, rng=rng)
    state = (checkpointer.restore() if resume else None) or {}
    step, updates, wall_before = state.get("step", 0), state.get("updates", 0), state.get("wall_seconds", 0.0)

    games = []  # step: env steps per game
    for g, (teacher, spec) in enumerate(zip(teachers, specs)):
        envs, _ = make_env(spec.env_id, config.n_envs, config.seed + 97 * g, **spec.settings)
        obs, _ = envs.reset(seed=resume_seed(config.seed + 97 * g, step))
        memory = ReplayMemory(config.memory_per_game, spec.obs_shape, spec.obs_dtype, config.n_envs,
                              spec.settings.get("stack_num", 1), extras={"teacher": ((spec.n_actions,), np.float32)},
                              pad=stack_padding(spec.settings))
        held = teacher_states(teacher, spec, config.heldout_size, config.seed + 777_777 + g, config.teacher_epsilon)
        if memory_on_device(memory.nbytes(), device):
            memory.keep_on(device)
        games.append({"teacher": teacher, "spec": spec, "envs": envs, "memory": memory, "held": held,
                      "collector": Collector(envs, spec, memory, obs, clip_rewards=False), "losses": []})

    def update(g: int) -> None:
        obs_B, extras = games[g]["memory"].sample_states(config.batch_size, rng, device)
        games[g]["losses"].append(fit(optimizer, loss_fn, student.logits(obs_B, g), extras["teacher"]))

    n_games, balanced = len(games), config.balance != "none"
    budget = config.steps_per_game * n_games  # teacher queries: one per collected state
    spent = state.get("spent", step * n_games)
    game_steps = np.asarray(state.get("game_steps", [step] * n_games), np.int64)
    natural = np.full(n_games, 1.0 / n_games)
    mix = np.asarray(state.get("mix") or natural, float)
    log_weights = np.asarray(state["log_weights"], float) if state.get("log_weights") is not None else None
    stages: list[dict] = state.get("stages", [])
    credit = np.zeros(n_games)
    t0, owed, filled = time.perf_counter(), 0.0, 0
    schedule = Schedule(step, log=config.log_every, checkpoint=config.checkpoint_every)
    bar = progress(budget, spent, f"multitask {n_games} games", progress_bar)
    while spent < budget:
        if balanced and len(stages) < config.balance_stages and spent >= len(stages) * budget / config.balance_stages:
            # a stage begins: the games' deficits on their held-out states set its mix
            agree = np.array([heldout(student.view(g), game["teacher"], game["held"], config.loss,
                                      config.tau)["agreement"] for g, game in enumerate(games)])
            deficit = None
            if stages:
                deficit = 1.0 - agree
                if config.balance == "fixed":
                    mix = fixed_mix(deficit, natural)
                else:
                    mix, log_weights = adaptive_mix(deficit, natural, log_weights)
            stages.append({"stage": len(stages), "queries": int(spent), "agreement": agree.tolist(),
                           "deficit": None if deficit is None else deficit.tolist(), "mix": mix.tolist()})
        if balanced:  # each game steps as often as its share says, never past the budget
            credit += mix * n_games
            stepping = [g for g in np.argsort(-credit, kind="stable") if credit[g] >= 1]
            stepping = stepping[:max(1, (budget - spent) // config.n_envs)]
            credit[stepping] -= 1
        else:
            stepping = range(n_games)
        for g in stepping:  # a game advances one vector step, its teacher acting and labelling
            collect_step(games[g]["collector"], games[g]["teacher"], rng, config.teacher_epsilon)
            game_steps[g] += config.n_envs
        spent += config.n_envs * len(stepping)
        step = spent // n_games
        filled += config.n_envs * (len(stepping) / n_games)
        bar.update(config.n_envs * len(stepping))
        if filled >= config.learning_starts:
            owed += config.updates_per_step * (len(stepping) / n_games)  # exactly updates_per_step unbalanced
            while owed >= 1:  # each minibatch is one game's: in turn, or drawn by the stage's mix
                owed -= 1
                for g in (rng.choice(n_games, n_games, p=mix) if balanced else range(n_games)):
                    update(int(g))
                    updates += 1

        wall = wall_before + time.perf_counter() - t0
        done = spent >= budget
        if schedule.due("log", step, done):
            row = {"wall_seconds": round(wall, 2), "charts/updates": updates}
            for g, game in enumerate(games):
                env_id = game["spec"].env_id
                row[f"{env_id}/loss"] = float(np.mean(game["losses"])) if game["losses"] else None
                row[f"{env_id}/agreement"] = heldout(student.view(g), game["teacher"], game["held"], config.loss,
                                                     config.tau)["agreement"]
                game["losses"] = []
            run.log(step, **row)
            if callback:
                callback({"step": step, **row})
        if schedule.due("checkpoint", step, done):
            checkpointer.save({"step": step, "updates": updates, "wall_seconds": wall, "spent": int(spent),
                               "game_steps": game_steps.tolist(), "mix": mix.tolist(), "stages": stages,
                               "log_weights": None if log_weights is None else log_weights.tolist()})
    bar.close()
    for game in games:
        game["envs"].close()
    wall = wall_before + time.perf_counter() - t0

    # -- each game: the student's head against its own teacher, on the same seeds --------------------------
    per_game = {}
    for g, game in enumerate(games):
        spec, view = game["spec"], student.view(g)
        s_eval = evaluate(view, spec.env_id, config.eval_episodes, config.eval_seed, spec.settings)
        t_eval = evaluate(game["teacher"], spec.env_id, config.eval_episodes, config.eval_seed, spec.settings)
        scores = score_card(s_eval, t_eval, spec, config.eval_episodes, config.eval_seed)
        per_game[spec.env_id] = {
            **{k: scores[k] for k in ("return_mean", "return_std", "teacher_return_mean", "teacher_return_std",
                                      "pct_of_teacher", "pct_of_teacher_kind")},
            "agreement": heldout(view, game["teacher"], game["held"], config.loss, config.tau)["agreement"],
            "teacher_params": game["teacher"].n_params, "params_to_act": view.n_params,
            "teacher_queries": int(game_steps[g]),
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
        "teacher_queries": int(spent), "worst_agreement": min(r["agreement"] for r in per_game.values()),
        "balanced_agreement": float(np.mean([r["agreement"] for r in per_game.values()])),
        **({"balance": {"rule": config.balance, "stages": stages}} if balanced else {}),
        **where, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    run.write_card(card)
    return card


def teachers_tau(cards: list[dict]) -> float:
    """The one temperature for teachers whose outputs are of one kind; teachers of both kinds need --tau."""
    taus = {default_tau(c) for c in cards}
    if len(taus) > 1:
        raise ConfigError("these teachers mix DQN Q-values and PPO logits, which want different temperatures "
                          "(0.01 and 1); give one with --tau")
    return taus.pop()


def per_game_table(card: dict):
    """One row per game: student and teacher return, % of teacher, agreement; the geometric mean last."""
    import pandas as pd

    rows = [{"game": k.split("/")[-1], "student": r["return_mean"], "teacher": r["teacher_return_mean"],
             "% of teacher": r["pct_of_teacher"], "agreement": r["agreement"]} for k, r in card["per_game"].items()]
    rows.append({"game": "geometric mean", "% of teacher": card["geomean_pct_of_teacher"]})
    return pd.DataFrame(rows).round(3)
