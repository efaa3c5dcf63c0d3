"""The distillation loop: collect states with a teacher/student mix, label them once, train the student.

Rusu et al. (2016): the frozen teacher plays epsilon-greedy (eps 0.05), a replay memory keeps its states
with its output vectors, and the student learns offline from that memory. ``beta`` is the share of steps
on which the teacher acts: 1 is Rusu's teacher-driven collection, 0 is student-driven (the teacher only
labels the student's states, fixing the distribution shift; Czarnecki et al. 2019), and a schedule such
as ``linear:1:0`` is DAgger-style (Ross et al. 2011). Whoever acts, the teacher is queried once per
collected state and its outputs are stored beside it; ``teacher_queries`` counts those calls.

``ema`` keeps an exponential moving average of the student's weights (Polyak averaging): the optimizer moves
the raw weights, and the averaged network is the student that acts, is evaluated and is saved. A student's score
moves by 10-15 points from one 50k-step evaluation to the next on Seaquest (README), and a card measures the
final weights once; the average is that final network with the last updates' noise taken out.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch

from ..agents.common import open_run, progress, resume_seed, resumed_defaults, seed_everything
from ..collect import make_collector
from ..config import ConfigError, OnDevice, Preset, check, with_preset
from ..evaluate import evaluate, evaluate_teacher
from ..hardware import place, resolve_device
from ..memory import ReplayMemory, stack_padding
from ..nets import (PRESET_FRACTIONS, NetSpec, build, family_for_obs, format_layers, make_spec, parse_layers,
                    preset_spec, spec_for_fraction, spec_params)
from ..runs import Checkpointer, read_json, save_policy
from .engine import (Schedule, StudentUpdater, WeightAverage, collect_step, default_tau, heldout, load_teacher,
                     score_card, teacher_states)
from .losses import check_actions, get_loss

StudentNet = Literal["teacher", "net1", "net2", "net3", "tiny"]
Family = Literal["nature_cnn", "minatar_cnn", "mlp"]
Loss = Literal["nll", "mse", "kl", "ppd"]
Method = Literal["collect", "balanced"]


@dataclass(frozen=True)
class DistillConfig(OnDevice):
    FLAGS: ClassVar[dict] = {"student_net": "preset-net", "student_width": "width", "student_family": "student",
                             "student_layers": "layers"}

    teacher: str = "data/teachers/minatar-breakout"
    """Teacher run folder (or a shipped teacher's name)."""
    preset: Preset = "demo"
    """Which preset filled the defaults: smoke, demo or full."""
    student_net: StudentNet | None = "net3"
    """Student size as Rusu's share of the teacher (net1 25%, net2 7%, net3 4%, tiny 1.7%); given --width or
    --layers alone, those size the student instead."""
    student_width: float = 0.25
    """Width multiplier of the family's base net, used when student_net is None."""
    student_family: Family | None = None
    """Network family of the student (default: the teacher's)."""
    student_layers: str | None = None
    """The student's own layer widths, 'CONV:HIDDEN' (e.g. '8:16'): its shape instead of the width knob's. With
    student_net they must come within 15% of that preset's parameters: another shape at the same size."""
    loss: Loss = "kl"
    """nll, mse or kl: supervised on stored teacher outputs. ppd: proximal policy distillation (Spigler 2024), the
    student a PPO learner on its own rollouts with a clipped KL term to the teacher (distill.proximal; beta 0)."""
    tau: float | None = None
    """KL temperature applied to the teacher; None: by the teacher's outputs, 0.01 for a DQN's Q-values (Rusu),
    1 for a PPO policy's logits (engine.DEFAULT_TAU). The run's config.json records the one it used."""
    beta: str = "1"
    """Share of steps the teacher acts: a number in [0, 1], or linear:START:END over the run (DAgger-style)."""
    teacher_epsilon: float = 0.05
    """Epsilon of the teacher's epsilon-greedy acting (Rusu: 0.05); 0 for greedy."""
    student_greedy: bool = True
    """Student acts by argmax (True) or by sampling its softmax (False)."""
    seed: int = 0
    """Seeds torch, numpy and the envs: same seed, same numbers on the same machine."""
    total_steps: int = 100_000
    """Env steps collected, summed over envs. The teacher is queried once per collected state, so this is also the
    run's budget of teacher queries; method balanced spends exactly this many, those made to measure and to
    generate included."""
    method: Method = "collect"
    """collect: one collection by the beta schedule (Rusu, student-driven, DAgger). balanced: multi-stage balanced
    distillation for long-tailed play (distill.balanced): stages under the teacher-query budget, each stage's mix
    over domains set from the student's deficits, the tail's data made by the teacher from restored states."""
    balance_stages: int = 4
    """balanced: stages the budget is spent in; the first is the teacher's own play."""
    balance_domain: str = "action"
    """balanced: what a domain is: action (the teacher's greedy action), or a name given to
    distill.balanced.register_domain (a state feature, say)."""
    balance_rule: Literal["fixed", "adaptive"] = "adaptive"
    """balanced: how deficits set the next stage's mix. fixed: half the natural mix, half the deficits; adaptive:
    multiplicative weights that keep moving towards the domains that stay behind."""
    balance_deficit: Literal["recall", "kl"] = "recall"
    """balanced: a domain's deficit, 1 - the student's recall of the teacher's action there, or its mean KL."""
    balance_eta: float = 1.0
    """balanced: step of the adaptive rule's log-weights per stage, per unit of relative deficit."""
    balance_tail: float = 0.05
    """balanced: a domain whose share of the teacher's play is below this is tail: the teacher generates its data."""
    balance_rollout: int = 32
    """balanced: teacher steps played on from each restored tail state (each a query)."""
    balance_screen: int = 4
    """balanced: head data: the student plays this many states for each one the teacher labels (the one the
    student is least sure of)."""
    balance_bank: int = 128
    """balanced: emulator states kept per domain to generate from (a reservoir sample of the teacher's states)."""
    n_envs: int = 8
    """Parallel envs collecting."""
    overlap: bool | None = None
    """Atari: step half the envs while the teacher labels the other half and the student learns (ale-py's
    send/recv). None: on for an Atari teacher with 2 or more envs (off for a run resumed from before the field
    existed, which ran without); MinAtar and classic control step synchronously."""
    memory_size: int = 100_000
    """Replay capacity in states."""
    batch_size: int = 256
    """States per student update."""
    lr: float | None = None
    """Adam step size; None: the student family's (``default_lr``: 1e-3, 2.5e-4 for a Nature CNN)."""
    updates_per_step: float = 0.25
    """Student updates per collected vector step of n_envs states."""
    learning_starts: int = 5_000
    """States collected before the first update."""
    heldout_size: int = 2_000
    """Teacher-driven states (other seeds) on which agreement and KL are measured."""
    log_every: int = 10_000
    """Env steps between metrics lines."""
    eval_every: int = 0
    """Env steps between student evaluations during the run (0: only at the end)."""
    eval_episodes: int = 30
    """Episodes of the final evaluation of student and teacher (greedy, fixed seeds)."""
    eval_seed: int = 10_000
    """Env seed of the first evaluation episode."""
    checkpoint_every: int = 50_000
    """Env steps between resume checkpoints."""
    ema: float = 0.0
    """Decay of a moving average of the student's weights, per update (0: off; 0.999 averages over about the
    last 1,000 updates). When on, the averaged student acts, is evaluated and is saved."""
    target_return: float | None = None
    """Stop once an evaluation during the run reaches this mean return over eval_episodes episodes from eval_seed
    (checked every eval_every env steps); the card records the env steps and train seconds it took."""
    from_dataset: str | None = None
    """A distilled set (``workbench distill-dataset``): the student trains only on its states and labels, no env
    step and no teacher query; the teacher measures it. None: distil from the teacher's play."""
    set_steps: int | None = None
    """With from_dataset: Adam steps on the set (minibatches of batch_size, or the whole set); None: the set's
    recorded recipe."""
    ppd_lambda: float = 1.0
    """ppd: weight of the KL term to the teacher (sb3_distill's distill_lambda)."""
    ppd_rollout: int = 128
    """ppd: steps per env in each rollout the student learns from."""
    ppd_epochs: int = 4
    """ppd: passes over each rollout (minibatches of batch_size states)."""
    ppd_clip: float = 0.2
    """ppd: PPO's clip range of the probability ratio, which also bounds the KL term's weight from below."""
    ppd_gamma: float = 0.99
    """ppd: discount of the env rewards the student's advantages are computed from."""
    ppd_gae_lambda: float = 0.95
    """ppd: GAE lambda of those advantages."""
    ppd_ent_coef: float = 0.0
    """ppd: weight of the entropy bonus (SB3's PPO default 0)."""
    ppd_vf_coef: float = 0.5
    """ppd: weight of the value loss."""

    def __post_init__(self):
        check(self, positive=("student_width", "total_steps", "n_envs", "memory_size", "batch_size", "tau", "lr",
                              "updates_per_step", "heldout_size", "log_every", "eval_episodes", "checkpoint_every"),
              non_negative=("learning_starts", "eval_every", "eval_seed", "seed"), probability=("teacher_epsilon",))
        beta_schedule(self.beta)
        if self.student_layers is not None:
            parse_layers(self.student_layers)
        check(self, positive=("ppd_rollout", "ppd_epochs"), non_negative=("ppd_lambda", "ppd_clip", "ppd_ent_coef",
                                                                           "ppd_vf_coef"),
              probability=("ppd_gamma", "ppd_gae_lambda"))
        if self.loss == "ppd" and self.beta != "0":
            raise ConfigError(f"loss ppd learns on the student's own rollouts: beta (--beta) must be 0, got "
                              f"{self.beta!r} (leave --beta out with --loss ppd)")
        if self.loss == "ppd" and self.ema:
            raise ConfigError("ema (--ema) is not used by loss ppd: the student that acts in its rollouts is the one "
                              "evaluated; leave --ema out")
        if self.from_dataset and self.loss == "ppd":
            raise ConfigError("loss ppd learns from the student's own rollouts, not from a set: leave out --loss ppd "
                              "with --from-dataset (kl, nll or mse)")
        if self.set_steps is not None and self.set_steps < 1:
            raise ConfigError(f"set_steps (--set-steps) must be at least 1, got {self.set_steps}")
        check(self, positive=("balance_stages", "balance_eta", "balance_rollout", "balance_screen", "balance_bank"),
              probability=("balance_tail",))
        if self.method == "balanced":
            if self.loss == "ppd" or self.from_dataset:
                raise ConfigError("method balanced collects and labels its own states: leave out "
                                  f"{'--loss ppd' if self.loss == 'ppd' else '--from-dataset'}")
            if self.beta != "1":
                raise ConfigError(f"method balanced decides who acts stage by stage (the teacher in the first, the "
                                  f"student for head data, the teacher for tail data): leave out --beta, got "
                                  f"{self.beta!r}")
            from .balanced import get_domain

            get_domain(self.balance_domain)
            if self.heldout_size + self.balance_stages * self.n_envs > self.total_steps:
                raise ConfigError(f"method balanced spends total_steps (--total-steps {self.total_steps}) teacher "
                                  f"queries, held-out set (--heldout-size {self.heldout_size}) included: give at least "
                                  f"{self.heldout_size + self.balance_stages * self.n_envs}")
        if self.ema and not 0.0 < self.ema < 1.0:
            raise ConfigError(f"ema (--ema) must be in (0, 1), e.g. 0.999, got {self.ema!r}; 0 turns the average off")


DISTILL_PRESETS = {
    "smoke": dict(total_steps=1_024, n_envs=4, memory_size=2_000, batch_size=64, learning_starts=256,
                  heldout_size=256, log_every=512, eval_episodes=3, updates_per_step=1.0, checkpoint_every=512),
    "demo": dict(total_steps=100_000, n_envs=8, memory_size=100_000, updates_per_step=0.5, log_every=10_000,
                 eval_every=50_000),
    # Rusu's scale: a long teacher-filled memory and millions of student updates (a GPU job on Atari).
    "full": dict(total_steps=10_000_000, n_envs=8, memory_size=1_000_000, batch_size=32, lr=1e-4,
                 updates_per_step=2.0, learning_starts=50_000, heldout_size=10_000, log_every=100_000,
                 eval_every=1_000_000, checkpoint_every=500_000),
}


# A Nature-CNN student on Atari frames at Adam 1e-3 can die before it starts: the first two Pong students at the demo
# preset, seeds 0 and 1, both sat on the majority action for 10k steps, and seed 0 never left it (15 of its 16
# first-layer filters dead at 50k steps, held-out agreement 0.336 to 70k, when it was stopped). At 2.5e-4 (the
# Nature/PPO Atari step size) seed 0 plays 21.0 after 30k steps (docs/lab-notes/data/pong_lr_probe.csv).
FAMILY_LR = {"nature_cnn": 2.5e-4}


def default_lr(family: str) -> float:
    """The distillation step size for a student family when the config does not set one."""
    return FAMILY_LR.get(family, 1e-3)


def distill_config(preset: str, teacher: str, **overrides) -> DistillConfig:
    if overrides.get("loss") == "ppd":  # the student collects: PPD has no teacher-driven form
        overrides.setdefault("beta", "0")
    return with_preset(DistillConfig, preset, DISTILL_PRESETS, fixed={"teacher": str(teacher)}, **overrides)


def beta_schedule(spec: str):
    """'1', '0.5' or 'linear:START:END' -> f(progress in [0, 1]) -> share of steps the teacher acts."""
    try:
        if spec.startswith("linear:"):
            _, a, b = spec.split(":")
            a, b = float(a), float(b)
            fn = lambda p: a + (b - a) * min(max(p, 0.0), 1.0)  # noqa: E731
        else:
            c = float(spec)
            fn = lambda p: c  # noqa: E731
    except ValueError:
        raise ConfigError(f"beta (--beta) must be a number in [0, 1] or linear:START:END, got {spec!r}") from None
    if not all(0.0 <= fn(p) <= 1.0 for p in (0.0, 1.0)):
        raise ConfigError(f"beta (--beta) must stay within [0, 1], got {spec!r}")
    return fn


def student_spec_for(config: DistillConfig, teacher_spec):
    """The student's NetSpec: a size preset (a share of the teacher's parameters), a width, or its own layers."""
    family = config.student_family or teacher_spec.family
    obs = tuple(teacher_spec.obs_shape)
    # An MLP flattens any observation; a CNN needs (C, H, W) frames, the Nature CNN's kernels at least 36x36.
    if family != "mlp" and (len(obs) != 3 or (family == "nature_cnn" and min(obs[1:]) < 36)):
        raise ValueError(f"a {family} student cannot read this teacher's observations {obs}; leave out --student "
                         f"(the teacher's family) or give --student {family_for_obs(obs)}")
    if config.student_layers is not None:
        conv, hidden = parse_layers(config.student_layers)
        spec = NetSpec(family, teacher_spec.obs_shape, teacher_spec.n_actions, conv, hidden, teacher_spec.obs_scale)
        if config.student_net is not None:
            preset = student_spec_for(dataclasses.replace(config, student_layers=None), teacher_spec)
            have, want = spec_params(spec), spec_params(preset)
            if abs(math.log(have / want)) > math.log(1.15):
                raise ValueError(
                    f"layers {config.student_layers} have {have:,} parameters, {have / want:.0%} of the "
                    f"{config.student_net} student's {want:,} (layers {format_layers(preset)}); give a shape within "
                    f"15% of it, or leave out the size preset to take these layers at any size")
        return spec
    if config.student_net is None:
        return make_spec(teacher_spec.obs_shape, teacher_spec.n_actions, family, config.student_width,
                         teacher_spec.obs_scale)
    if family == teacher_spec.family:
        return preset_spec(config.student_net, teacher_spec)
    base = make_spec(teacher_spec.obs_shape, teacher_spec.n_actions, family, 1.0, teacher_spec.obs_scale)
    share = PRESET_FRACTIONS[config.student_net] * spec_params(teacher_spec) / spec_params(base)
    return spec_for_fraction(base, share)


class StudentRun:
    """One student of a distillation run, from its config to its card: its network, optimizer, weight average,
    minibatch RNG, run folder, checkpoint and schedule. ``distill`` trains one from a collection of its own;
    ``shared.distill_shared`` trains several from one teacher-driven collection. The collection (envs, memory,
    teacher, held-out states) is the caller's."""

    def __init__(self, config: DistillConfig, out, teacher, teacher_card: dict, env, device, resume: bool,
                 memory=None, rng: np.random.Generator | None = None, **record):
        s_spec = student_spec_for(config, teacher.spec)
        if config.loss == "ppd":  # a PPO learner: a critic head on the student's trunk (not counted as acting)
            s_spec = dataclasses.replace(s_spec, value_head=True)
        check_actions(s_spec.n_actions, teacher.n_actions)
        # Defaults that depend on the teacher or the student are settled here, so the run's config.json records
        # them (a resumed run keeps those it settled).
        config = resumed_defaults(out, config, resume, fields=("lr", "tau", "overlap"))
        if config.overlap is None:  # a run resumed from before the field existed ran without it
            older = resume and (Path(out) / "config.json").exists() and "overlap" not in read_json(
                Path(out) / "config.json")
            config = dataclasses.replace(config, overlap=env.family == "ale" and config.n_envs >= 2 and not older
                                         and "conventions" not in env.settings)
        if config.overlap and "conventions" in env.settings:
            raise ConfigError(f"overlap (--overlap) steps ale-py's vector env in two halves (its send/recv); this "
                              f"teacher plays under conventions={env.settings['conventions']!r} (its library's own "
                              "Atari wrappers, stepped in Python): leave --overlap out")
        config = dataclasses.replace(config, lr=config.lr or default_lr(s_spec.family),
                                     tau=config.tau or default_tau(teacher_card))
        self.config, self.spec, self.teacher, self.teacher_card, self.env = config, s_spec, teacher, teacher_card, env
        self.student = build(s_spec, "pi", seed=config.seed)
        self.where = place(device, memory, self.student)
        self.loss_fn = get_loss(config.loss, config.tau)
        self.optimizer = torch.optim.Adam(self.student.parameters(), lr=config.lr)
        self.updater = StudentUpdater(self.student, self.optimizer, self.loss_fn, config.batch_size)
        self.average = WeightAverage(self.student, config.ema) if config.ema else None
        self.policy = self.average.model if self.average else self.student  # acts, is evaluated and is saved
        self.run = open_run(out, config, env, resume, **self.where, **record)
        self.record = record
        self.rng = rng if rng is not None else np.random.default_rng(config.seed)
        self.memories = {"memory": memory} if memory is not None else {}
        self.checkpointer = Checkpointer(self.run, nets={"student": self.student, **(
            {"ema": self.average.model} if self.average else {})}, optimizers={"optim": self.optimizer},
            memories=self.memories, rng=self.rng)
        self.step = self.updates = self.queries = 0
        self.wall_before = self.eval_seconds = 0.0
        self.losses: list[float] = []
        self.owed = 0.0
        self.reached: dict | None = None  # where an evaluation first reached config.target_return

    def restore(self) -> int:
        """Load the run's checkpoint (if any); returns the env step it stopped at."""
        state = self.checkpointer.restore() or {}
        self.step, self.updates = state.get("step", 0), state.get("updates", 0)
        self.queries = state.get("teacher_queries", 0)
        self.wall_before, self.eval_seconds = state.get("wall_seconds", 0.0), state.get("eval_seconds", 0.0)
        if self.average:
            self.average.n = state.get("ema_updates", 0)
        self.reached = state.get("reached")
        return self.step

    def start(self, t0: float) -> None:
        c = self.config
        self.t0 = t0
        self.schedule = Schedule(self.step, log=c.log_every, eval=c.eval_every, checkpoint=c.checkpoint_every)

    def learn(self, step: int, memory) -> None:
        """The updates owed after the collection reached ``step``: supervised steps on stored (state, teacher
        output) pairs, ``updates_per_step`` per vector step once ``learning_starts`` states are in."""
        c = self.config
        self.step, self.queries = step, self.queries + c.n_envs
        if step < c.learning_starts:
            return
        self.owed += c.updates_per_step
        while self.owed >= 1:
            self.owed -= 1
            self.updater(memory, self.rng)
            self.updates += 1
            if self.average:
                self.average.update(self.student)

    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.t0

    def heldout(self, held, net=None) -> dict:
        return heldout(net or self.policy, self.teacher, held, self.config.loss, self.config.tau)

    def log(self, held, beta: float, done: bool, callback=None) -> dict | None:
        """The metrics line when one is due: loss, held-out agreement and KL, and the return when an evaluation is."""
        c, step = self.config, self.step
        if not self.schedule.due("log", step, done):
            return None
        wall = self.wall()
        t_eval = time.perf_counter()
        losses = self.losses + self.updater.take_losses()  # a method's own updates, or the updater's
        row = {"losses/distill": float(np.mean(losses)) if losses else None, "charts/beta": beta,
               "charts/updates": self.updates, "charts/teacher_queries": self.queries,
               **{f"heldout/{k}": v for k, v in self.heldout(held).items()}, "wall_seconds": round(wall, 2)}
        if self.average:  # the raw weights beside the average: what averaging buys, on the same held-out states
            row.update({f"heldout/{k}_unaveraged": v for k, v in self.heldout(held, self.student).items()})
        # Measuring is not training: train_seconds leaves out the held-out and return evaluations (``wall`` was
        # read before this row's, which count from the next row on).
        row["train_seconds"] = round(wall - self.eval_seconds, 2)
        if self.schedule.due("eval", step):
            # Against a target, the full evaluation (its episodes are the target's definition); else a quick look.
            n = c.eval_episodes if c.target_return is not None else min(10, c.eval_episodes)
            row["charts/student_return"] = evaluate(self.policy, self.env.env_id, n, c.eval_seed,
                                                    self.env.settings).mean
            if c.target_return is not None and self.reached is None and row["charts/student_return"] >= c.target_return:
                self.reached = {"return": row["charts/student_return"], "env_steps": step,
                                "train_seconds": row["train_seconds"], "updates": self.updates}
        self.eval_seconds += time.perf_counter() - t_eval
        self.run.log(step, **row)
        if callback:
            callback({"step": step, **row})
        self.losses = []
        return row

    def due(self, step: int, total: int) -> bool:
        """Whether the run is over at ``step``: its env steps are spent, or an evaluation reached its target."""
        return step >= total or self.reached is not None

    def checkpoint(self, done: bool) -> None:
        if self.schedule.due("checkpoint", self.step, done):
            self.checkpointer.save({"step": self.step, "updates": self.updates, "teacher_queries": self.queries,
                                    "wall_seconds": self.wall(), "eval_seconds": self.eval_seconds,
                                    "reached": self.reached,
                                    **({"ema_updates": self.average.n} if self.average else {})})

    def finish(self, held, wall: float | None = None) -> dict:
        """Evaluate student and teacher on the same seeds (the teacher's returns from its card if it holds them),
        save the student and write the card; returns it."""
        c, env, teacher = self.config, self.env, self.teacher
        wall = self.wall() if wall is None else wall
        s_eval = evaluate(self.policy, env.env_id, c.eval_episodes, c.eval_seed, env.settings)
        t_eval = evaluate_teacher(teacher, self.teacher_card, env.env_id, c.eval_episodes, c.eval_seed, env.settings)
        scores = score_card(s_eval, t_eval, env, c.eval_episodes, c.eval_seed)
        measures = self.heldout(held)
        save_policy(self.run.file("model.safetensors"), self.policy, env_id=env.env_id, algo="distill",
                    teacher=c.teacher)
        unaveraged = {}
        if self.average:  # the final raw weights on the same seeds: a paired measure of what the average changed
            raw = evaluate(self.student, env.env_id, c.eval_episodes, c.eval_seed, env.settings)
            raw_scores = score_card(raw, t_eval, env, c.eval_episodes, c.eval_seed, scores.get("random_return_mean"))
            unaveraged = {"ema_updates": self.average.n, "unaveraged": {
                **raw.summary("return"), "pct_of_teacher": raw_scores["pct_of_teacher"],
                **self.heldout(held, self.student)}}
        student = self.student
        card = {
            "env_id": env.env_id, "algo": "distill", "preset": c.preset, "seed": c.seed,
            "teacher": c.teacher, "teacher_params": teacher.n_params, "params": student.n_params,
            "student_params": student.n_params, "compression": student.n_params / teacher.n_params,
            "student_net": c.student_net, "net": dataclasses.asdict(self.spec), "kind": "pi",
            "loss": c.loss, "tau": c.tau, "beta": c.beta, "ema": c.ema, "env_steps": self.step,
            "frames": self.step * int(env.settings.get("frameskip", 1)), "updates": self.updates,
            "teacher_queries": self.queries, "student_updates": self.updater.mode, "wall_seconds": round(wall, 1),
            "eval_seed": c.eval_seed, **scores,
            "agreement": measures["agreement"], "kl": measures["kl"], "env_settings": env.settings,
            "action_meanings": list(env.action_meanings), **self.where, **self.record,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **unaveraged,
            **({"target_return": c.target_return, "target_reached": self.reached}
               if c.target_return is not None else {}),
        }
        self.run.write_card(card)
        return card


def setup_collection(config: DistillConfig):
    """(device, teacher on it, teacher's card, EnvSpec, empty replay memory with room for the teacher's outputs)."""
    device = resolve_device(config.device)
    teacher, teacher_card, env = load_teacher(config.teacher)
    teacher.eval()
    place(device, None, teacher)
    memory = ReplayMemory(config.memory_size, env.obs_shape, env.obs_dtype, config.n_envs,
                          env.settings.get("stack_num", 1), extras={"teacher": ((env.n_actions,), np.float32)},
                          pad=stack_padding(env.settings))
    return device, teacher, teacher_card, env, memory


def distill(config: DistillConfig, out: str | Path, resume: bool = False, progress_bar: bool = True,
            callback=None) -> dict:
    """Distil the teacher into a student; writes the run folder ``out`` and returns its card."""
    if config.from_dataset:  # a handful of stored states instead of the teacher's play
        from .dataset import distill_from_set

        return distill_from_set(config, out, resume, progress_bar, callback)
    if config.method == "balanced":  # stages under a query budget, a mix over domains, teacher-made tail data
        from .balanced import distill_balanced

        return distill_balanced(config, out, resume, progress_bar, callback)
    if config.loss == "ppd":  # on-policy: PPO rollouts instead of a replay memory
        from .proximal import distill_proximal

        return distill_proximal(config, out, resume, progress_bar, callback)
    seed_everything(config.seed)
    device, teacher, teacher_card, env, memory = setup_collection(config)
    rng = np.random.default_rng(config.seed)  # one generator: the collection's draws and the minibatches
    s = StudentRun(config, out, teacher, teacher_card, env, device, resume, memory=memory, rng=rng)
    config = s.config
    beta = beta_schedule(config.beta)
    held = teacher_states(teacher, env, config.heldout_size, config.seed + 777_777, config.teacher_epsilon)
    step = s.restore() if resume else 0
    collector = make_collector(env, config.n_envs, config.seed, memory, config.overlap,
                               resume_seed(config.seed, step), clip_rewards=False)
    s.start(time.perf_counter())
    bar = progress(config.total_steps, step, f"distill {config.loss} -> {s.spec.family}", progress_bar)
    while not s.due(step, config.total_steps):
        # -- collect: the teacher labels every state once; beta decides who acts ----------------------------
        b = beta(step / config.total_steps)
        collect_step(collector, teacher, rng, config.teacher_epsilon, s.policy, b, config.student_greedy)
        step += config.n_envs
        bar.update(config.n_envs)
        # -- learn, log, checkpoint -----------------------------------------------------------------------
        s.learn(step, memory)
        done = step >= config.total_steps
        row = s.log(held, b, done, callback)
        done = s.due(step, config.total_steps)
        if row:
            bar.set_postfix(loss=f"{row['losses/distill'] or 0:.3f}", agree=f"{row['heldout/agreement']:.2f}")
        s.checkpoint(done)
    bar.close()
    collector.close()
    return s.finish(held)
