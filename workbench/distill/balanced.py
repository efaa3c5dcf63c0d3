"""Balanced multi-stage distillation for long-tailed experience, after Zhou et al. (Findings of EMNLP 2024,
"Multi-Stage Balanced Distillation"), carried from sequence-level distillation into policy distillation.

A teacher's play is long-tailed: some of its actions are rare (FIRE after a lost life, surfacing for oxygen), and
under uniform replay those states get a tiny share of the student's updates. Here the run is a fixed budget of
teacher queries (``total_steps``: every query counts, those made to measure and to generate included), spent in
``balance_stages`` stages:

- **stage 0**: the teacher plays epsilon-greedy (Rusu's collection) and labels what it sees; its shares of the
  domains are the *natural* mix, the one uniform distillation trains on;
- **after each stage**: the student's *deficit* per domain is measured on a held-out set of teacher-labelled states
  (bought from the budget at the start): 1 - its recall of the teacher's action in that domain
  (``balance_deficit="recall"``), or its mean KL(teacher || student) there (``"kl"``); a balancing rule sets the next
  stage's *mix* over domains from the deficits:
  - ``fixed``: half the natural mix, half the deficits normalised (the same formula every stage);
  - ``adaptive``: the mix's log-weights start at the natural mix and move each stage by ``balance_eta`` times each
    domain's deficit relative to the mix's mean deficit (multiplicative weights: a domain that stays behind keeps
    gaining, one that catches up gives its share back), with a fifth of the natural mix always kept;
- **each later stage** spends its queries two ways. *Tail* domains (natural share below ``balance_tail``) get new
  data made by the teacher: the emulator is restored to a stored state of that domain (ALE's serialised state;
  MinAtar's as JSON, ``trace.SingleEnv.state_bytes``) and the teacher plays on from there for ``balance_rollout``
  steps, labelling every state it sees. *Head* domains get states chosen actively: the student plays (no query),
  and of every ``balance_screen`` states it sees the teacher labels the one the student is least sure of (the
  highest entropy). The tail's share of the stage's queries is the mix's share of the tail domains.
- **training** runs through every stage, ``updates_per_step`` updates per ``n_envs`` queries as in ``distill``, so
  that equal budgets buy equal updates. Minibatches follow the stage's mix across domains; within a head domain a
  stored state is drawn by how much the student disagrees with its stored teacher label (KL, refreshed as it
  trains), half of the draws, uniformly the other half.

Domains: ``action`` is the teacher's greedy action. Another is one call,
``register_domain("low_oxygen", of=lambda obs, t: (obs[:, 7].sum((1, 2)) < 3).astype(int), count=lambda spec: 2)``:
``of`` maps a batch of states and the teacher's outputs on them to domain ids, ``count`` says how many there are for
an env. Multi-task distillation's domains (the games) are not built here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..agents.common import progress, resume_seed, seed_everything
from ..config import ConfigError
from ..envs import EnvSpec
from ..hardware import resolve_device
from ..trace import SingleEnv
from .engine import epsilon_greedy, load_teacher, teacher_states

PLAY, ACTIVE, GENERATED = 0, 1, 2  # where a stored state came from


# -- domains ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Domain:
    """How states fall into domains: ``of(obs_B, teacher_out_BA) -> ids_B``, ``count(spec)`` domains, named by
    ``names(spec)``."""

    of: Callable[[np.ndarray, np.ndarray], np.ndarray]
    count: Callable[[EnvSpec], int]
    names: Callable[[EnvSpec], list] | None = None

    def labels(self, spec: EnvSpec) -> list[str]:
        return [str(n) for n in self.names(spec)] if self.names else [str(i) for i in range(self.count(spec))]


DOMAINS: dict[str, Domain] = {
    "action": Domain(of=lambda obs, t: np.asarray(t).argmax(-1), count=lambda spec: spec.n_actions,
                     names=lambda spec: list(spec.action_meanings)),
}


def register_domain(name: str, of: Callable, count: Callable, names: Callable | None = None) -> None:
    """Make ``name`` a value of ``balance_domain``: ``of(obs_B, teacher_out_BA)`` gives each state's domain id in
    ``range(count(spec))``."""
    if not name or not isinstance(name, str):
        raise ValueError(f"a domain needs a name, got {name!r}")
    DOMAINS[name] = Domain(of, count, names)


def get_domain(name: str) -> Domain:
    if name not in DOMAINS:
        raise ConfigError(f"balance_domain (--balance-domain) {name!r} is not a known domain; choose one of "
                         f"{sorted(DOMAINS)}, or register another with workbench.distill.balanced.register_domain")
    return DOMAINS[name]


def domain_ids(domain: Domain, spec: EnvSpec, obs, teacher_out) -> np.ndarray:
    ids = np.asarray(domain.of(np.asarray(obs), np.asarray(teacher_out)), dtype=np.int64)
    n = domain.count(spec)
    if ids.shape != (len(obs),) or (len(ids) and (ids.min() < 0 or ids.max() >= n)):
        raise ValueError(f"the domain function gave {ids.shape} ids in [{ids.min() if len(ids) else '-'}, "
                         f"{ids.max() if len(ids) else '-'}]; it must give one id in [0, {n}) per state")
    return ids


# -- measures -----------------------------------------------------------------------------------------------------
@torch.no_grad()
def per_state_kl(student, obs, teacher_out, tau: float = 1.0) -> torch.Tensor:
    """KL(softmax(teacher / tau) || student) per state."""
    t = torch.as_tensor(np.asarray(teacher_out) if not torch.is_tensor(teacher_out) else teacher_out)
    s = student.logits(obs).float().cpu()
    log_t = torch.log_softmax(t.float().cpu() / tau, -1)
    return (log_t.exp() * (log_t - torch.log_softmax(s, -1))).sum(-1)


def heldout_domains(teacher, spec: EnvSpec, n: int, seed: int, epsilon: float = 0.05, domain: str = "action") -> dict:
    """n teacher-labelled states of its epsilon-greedy play on seeds from ``seed``, with their domains."""
    obs, t_out = teacher_states(teacher, spec, n, seed, epsilon)
    d = get_domain(domain)
    return {"obs": obs, "teacher": t_out.cpu(), "domain": domain_ids(d, spec, obs.cpu().numpy(), t_out.cpu().numpy()),
            "names": d.labels(spec)}


@torch.no_grad()
def domain_report(student, held: dict, tau: float = 1.0, min_states: int = 10) -> dict:
    """Per domain on a held-out set: states, recall of the teacher's action (the share of the domain's states where
    the student's argmax is the teacher's) and mean KL. ``balanced_accuracy`` is the mean recall over domains with at
    least ``min_states`` states, ``worst_recall`` the lowest of them (``worst_domain`` its name)."""
    s_out = student.logits(held["obs"]).float().cpu()
    t_out = torch.as_tensor(held["teacher"]).float()
    agree = (s_out.argmax(-1) == t_out.argmax(-1)).numpy()
    log_t = torch.log_softmax(t_out / tau, -1)
    kl = (log_t.exp() * (log_t - torch.log_softmax(s_out, -1))).sum(-1).numpy()
    dom, names = np.asarray(held["domain"]), held["names"]
    n = np.bincount(dom, minlength=len(names))
    recall = np.array([agree[dom == d].mean() if n[d] else np.nan for d in range(len(names))])
    kl_d = np.array([kl[dom == d].mean() if n[d] else np.nan for d in range(len(names))])
    counted = n >= min_states
    worst = int(np.nanargmin(np.where(counted, recall, np.nan))) if counted.any() else None
    return {"states": n.tolist(), "recall": _listed(recall), "kl": _listed(kl_d), "names": list(names),
            "agreement": float(agree.mean()), "mean_kl": float(kl.mean()),
            "balanced_accuracy": float(recall[counted].mean()) if counted.any() else None,
            "worst_recall": float(recall[worst]) if worst is not None else None,
            "worst_domain": names[worst] if worst is not None else None}


def _listed(values) -> list:
    """Floats for JSON: NaN (a domain with nothing to measure) as None."""
    return [None if np.isnan(v) else float(v) for v in np.asarray(values, float)]


# -- the balancing rules ------------------------------------------------------------------------------------------
def deficits(report: dict, kind: str = "recall", min_states: int = 10) -> np.ndarray:
    """The student's deficit per domain from ``domain_report``: 1 - recall, or the mean KL; NaN where the held-out set
    has fewer than ``min_states`` states of the domain (nothing to measure it on: the rules leave its share alone)."""
    n = np.asarray(report["states"])
    values = 1.0 - np.asarray(report["recall"], dtype=float) if kind == "recall" else np.asarray(report["kl"], float)
    return np.where(n >= min_states, np.clip(values, 0.0, None), np.nan)


def fixed_mix(deficit: np.ndarray, natural: np.ndarray) -> np.ndarray:
    """Over the measured domains, half their natural share, half their share of the deficits (all natural where no
    domain falls short); an unmeasured domain (NaN deficit) keeps its natural share."""
    natural = np.asarray(natural, float) / np.sum(natural)
    deficit = np.asarray(deficit, float)
    measured = ~np.isnan(deficit)
    total = float(np.sum(deficit[measured]))
    if total <= 0:
        return natural
    mix = natural.copy()
    mix[measured] = 0.5 * natural[measured] + 0.5 * natural[measured].sum() * deficit[measured] / total
    return mix


def adaptive_mix(deficit: np.ndarray, natural: np.ndarray, log_weights: np.ndarray | None, eta: float = 1.0,
                 keep: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(mix, log-weights): the log-weights (the natural mix's logs at first) move by ``eta`` times each measured
    domain's deficit relative to the mean deficit under the current weights (an unmeasured domain, NaN, does not
    move); the mix is their softmax over the domains the teacher visits, with ``keep`` of the natural mix kept."""
    natural = np.asarray(natural, float) / np.sum(natural)
    deficit = np.asarray(deficit, float)
    seen, measured = natural > 0, ~np.isnan(deficit)
    if log_weights is None:
        log_weights = np.where(seen, np.log(np.where(seen, natural, 1.0)), -np.inf)
    w = np.exp(log_weights - log_weights[seen].max()) * seen
    current = w / w.sum()
    both = seen & measured
    mean = float(np.sum(current[both] * deficit[both]) / max(np.sum(current[both]), 1e-12))
    if mean > 0:
        step = np.where(both, eta * (np.nan_to_num(deficit) - mean) / mean, 0.0)
        log_weights = np.where(seen, log_weights + step, -np.inf)
    w = np.exp(log_weights - log_weights[seen].max()) * seen
    mix = (1 - keep) * w / w.sum() + keep * natural
    return mix, log_weights


def split_queries(n: int, mix: np.ndarray, tail: np.ndarray) -> tuple[int, np.ndarray]:
    """(queries for the head, queries per domain for the tail) out of a stage's ``n``, by the mix's shares; tail
    domains are those flagged in ``tail`` (with states to generate from)."""
    tail_mix = np.where(tail, mix, 0.0)
    per_tail = np.floor(n * tail_mix).astype(int)
    return int(n - per_tail.sum()), per_tail


# -- the budget ---------------------------------------------------------------------------------------------------
class BudgetSpent(RuntimeError):
    """A teacher query past the run's budget: a bug in a method, never a silent overspend."""


class QueryBudget:
    """Every teacher query of a run goes through ``label``, which counts it and refuses to go past ``total``."""

    def __init__(self, total: int, spent: int = 0):
        self.total, self.spent = int(total), int(spent)

    @property
    def left(self) -> int:
        return self.total - self.spent

    @torch.no_grad()
    def label(self, teacher, obs) -> np.ndarray:
        n = len(obs)
        if n > self.left:
            raise BudgetSpent(f"{n} teacher queries asked with {self.left} of the budget of {self.total} left")
        self.spent += n
        return teacher.logits(obs).float().cpu().numpy()


# -- stored states ------------------------------------------------------------------------------------------------
class LabelledStates:
    """The run's teacher-labelled states (a ring of ``capacity``): each with the teacher's outputs, its domain, where
    it came from and the student's last measured KL to its label. ``sample`` draws by domain weights."""

    def __init__(self, capacity: int, obs_shape, obs_dtype, n_out: int):
        self.capacity = capacity
        self.obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.teacher = np.zeros((capacity, n_out), np.float32)
        self.domain = np.zeros(capacity, np.int64)
        self.source = np.zeros(capacity, np.int8)
        self.stage = np.zeros(capacity, np.int16)
        self.hardness = np.zeros(capacity, np.float32)
        self.pos = self.size = 0

    def add(self, obs, teacher_out, domain, source: int, stage: int, hardness=None) -> None:
        for i in range(len(obs)):
            k = self.pos
            self.obs[k], self.teacher[k], self.domain[k] = obs[i], teacher_out[i], domain[i]
            self.source[k], self.stage[k] = source, stage
            self.hardness[k] = 0.0 if hardness is None else hardness[i]
            self.pos = (k + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def counts(self, n_domains: int, source: int | None = None) -> np.ndarray:
        d = self.domain[:self.size] if source is None else self.domain[:self.size][self.source[:self.size] == source]
        return np.bincount(d, minlength=n_domains)

    def sampler(self, mix: np.ndarray | None, prioritise: np.ndarray | None = None) -> np.ndarray:
        """Cumulative draw weights over the stored states: each domain's share of ``mix`` (uniform when None) spread
        over its states; in domains flagged in ``prioritise``, half by the stored hardness, half uniformly."""
        n = self.size
        if mix is None:
            return np.arange(1, n + 1, dtype=np.float64)
        dom = self.domain[:n]
        counts = np.bincount(dom, minlength=len(mix)).astype(np.float64)
        share = np.where(counts > 0, np.asarray(mix, float) / np.maximum(counts, 1), 0.0)
        w = share[dom]
        if prioritise is not None:
            h = self.hardness[:n].astype(np.float64)
            sums = np.bincount(dom, weights=h, minlength=len(mix))
            rel = np.where(sums[dom] > 0, h * counts[dom] / np.where(sums[dom] > 0, sums[dom], 1.0), 1.0)
            w = np.where(prioritise[dom], w * 0.5 * (1.0 + rel), w)
        return np.cumsum(w)

    def sample(self, cumulative: np.ndarray, batch: int, rng: np.random.Generator) -> np.ndarray:
        idx = np.searchsorted(cumulative, rng.random(batch) * cumulative[-1], side="right")
        return np.minimum(idx, len(cumulative) - 1)

    def state_arrays(self) -> dict:
        n = self.size
        return {"obs": self.obs[:n], "teacher": self.teacher[:n], "domain": self.domain[:n], "source": self.source[:n],
                "stage": self.stage[:n], "hardness": self.hardness[:n], "pos": np.array([self.pos, self.size])}

    def load_state_arrays(self, arrays: dict) -> None:
        self.pos, self.size = (int(x) for x in arrays["pos"])
        n = self.size
        for name in ("obs", "teacher", "domain", "source", "stage", "hardness"):
            getattr(self, name)[:n] = arrays[name]


class TailBank:
    """Emulator states to generate from, up to ``per_domain`` per domain: a reservoir sample of the labelled states
    of each domain (Vitter's algorithm R, so every state of a domain has the same chance of being kept), each as
    ``SingleEnv.state_bytes`` with its observation."""

    def __init__(self, n_domains: int, per_domain: int):
        self.per_domain = per_domain
        self.states: list[list[bytes]] = [[] for _ in range(n_domains)]
        self.seen = np.zeros(n_domains, np.int64)

    def offer(self, domain: int, env: SingleEnv, rng: np.random.Generator) -> None:
        self.seen[domain] += 1
        kept = self.states[domain]
        if len(kept) < self.per_domain:
            kept.append(env.state_bytes())
        else:
            j = int(rng.integers(0, self.seen[domain]))
            if j < self.per_domain:
                kept[j] = env.state_bytes()

    def sizes(self) -> np.ndarray:
        return np.array([len(s) for s in self.states])

    def draw(self, domain: int, rng: np.random.Generator) -> bytes:
        return self.states[domain][int(rng.integers(0, len(self.states[domain])))]

    def state_arrays(self) -> dict:
        flat = [(d, b) for d, kept in enumerate(self.states) for b in kept]
        lengths = np.array([len(b) for _, b in flat], np.int64)
        data = np.frombuffer(b"".join(b for _, b in flat), np.uint8) if flat else np.zeros(0, np.uint8)
        return {"data": data, "lengths": lengths, "domain": np.array([d for d, _ in flat], np.int64),
                "seen": self.seen}

    def load_state_arrays(self, arrays: dict) -> None:
        self.seen = arrays["seen"].astype(np.int64).copy()
        self.states = [[] for _ in range(len(self.seen))]
        data, at = arrays["data"].tobytes(), 0
        for d, n in zip(arrays["domain"], arrays["lengths"]):
            self.states[int(d)].append(data[at:at + int(n)])
            at += int(n)


# -- acting in single envs (the ones whose states can be stored and restored) -------------------------------------
class Players:
    """``n`` single envs that play on together, each restarting on its own when its episode ends; episode k of env i
    starts from env seed ``seed + i + n * k`` (MinAtar and classic control reset to the seed they are given)."""

    def __init__(self, spec: EnvSpec, n: int, seed: int):
        self.n, self.seed = n, seed
        self.envs = [SingleEnv(spec, seed + i) for i in range(n)]
        self.count = np.zeros(n, np.int64)
        self.obs = np.stack([self._reset(i) for i in range(n)])

    def _reset(self, i: int) -> np.ndarray:
        env = self.envs[i]
        env.seed = self.seed + i + self.n * int(self.count[i])
        self.count[i] += 1
        return env.reset()

    def step(self, actions) -> np.ndarray:
        """Every env acts once; returns which episodes ended (those envs have restarted)."""
        done = np.zeros(self.n, bool)
        for i, (env, a) in enumerate(zip(self.envs, actions)):
            obs, _, done[i] = env.step(int(a))
            self.obs[i] = self._reset(i) if done[i] else obs
        return done


# -- the run ------------------------------------------------------------------------------------------------------
def stage_queries(total: int, heldout: int, stages: int) -> list[int]:
    """Each stage's queries: what the budget leaves after the held-out set, in equal parts (the remainder last)."""
    per = (total - heldout) // stages
    return [per] * (stages - 1) + [total - heldout - per * (stages - 1)]


def distill_balanced(config, out: str | Path, resume: bool = False, progress_bar: bool = True, callback=None) -> dict:
    """Balanced multi-stage distillation of ``config.teacher`` (a ``loop.DistillConfig`` with method "balanced");
    writes the run folder ``out`` and returns its card."""
    from .loop import StudentRun

    c = config
    seed_everything(c.seed)
    device = resolve_device(c.device)
    teacher, teacher_card, env = load_teacher(c.teacher)
    teacher.eval()
    teacher.to(device)
    domain = get_domain(c.balance_domain)
    n_dom, names = domain.count(env), domain.labels(env)
    store = LabelledStates(c.memory_size, env.obs_shape, env.obs_dtype, env.n_actions)
    bank = TailBank(n_dom, c.balance_bank)
    rng = np.random.default_rng(c.seed)
    s = StudentRun(c, out, teacher, teacher_card, env, device, resume, rng=rng, method="balanced",
                   balance_domains=names)
    s.checkpointer.memories.update(memory=store, bank=bank)
    c = s.config
    quotas = stage_queries(c.total_steps, c.heldout_size, c.balance_stages)

    state = (s.checkpointer.restore() or {}) if resume else {}
    s.step, s.updates = state.get("step", 0), state.get("updates", 0)
    s.wall_before, s.eval_seconds = state.get("wall_seconds", 0.0), state.get("eval_seconds", 0.0)
    if s.average:
        s.average.n = state.get("ema_updates", 0)
    budget = QueryBudget(c.total_steps, state.get("teacher_queries", 0))
    history: list[dict] = state.get("stages", [])
    log_weights = np.asarray(state["log_weights"], float) if state.get("log_weights") is not None else None
    natural = np.asarray(state["natural"], float) if state.get("natural") is not None else None
    env_steps = state.get("env_steps", 0)

    # The held-out set the deficits are measured on is bought from the budget (counted once, rebuilt on resume).
    held_obs, held_t = teacher_states(teacher, env, c.heldout_size, c.seed + 777_777, c.teacher_epsilon)
    if budget.spent == 0:
        budget.spent = c.heldout_size
    held = {"obs": held_obs, "teacher": held_t.float().cpu(), "names": names,
            "domain": domain_ids(domain, env, held_obs.cpu().numpy(), held_t.cpu().numpy())}
    held_pair = (held_obs, held_t)

    s.start(time.perf_counter())
    s.step = budget.spent
    bar = progress(c.total_steps, budget.spent, f"distill balanced -> {s.spec.family}", progress_bar)
    # Episode seeds: a run's own range of 65,536 (seed + i + n_envs * k for episode k of env i), apart from other seeds'.
    base = c.seed * 65_536 % 2**30
    play = Players(env, c.n_envs, resume_seed(base, env_steps))
    gen = Players(env, c.n_envs, resume_seed(base + 32_768, env_steps))
    rollout_left = np.zeros(c.n_envs, np.int64)
    rollout_domain = np.zeros(c.n_envs, np.int64)
    owed = 0.0

    def train(queries: int, sampler, mix) -> None:
        nonlocal owed
        if budget.spent < c.learning_starts or store.size == 0:
            return
        owed += c.updates_per_step * queries / c.n_envs
        while owed >= 1:
            owed -= 1
            idx = (rng.integers(0, store.size, c.batch_size) if mix is None else
                   store.sample(sampler[0], c.batch_size, rng))
            obs = torch.as_tensor(store.obs[idx]).to(device)
            target = torch.as_tensor(store.teacher[idx]).to(device)
            loss = s.loss_fn(s.student.logits(obs), target)
            s.optimizer.zero_grad()
            loss.backward()
            s.optimizer.step()
            s.losses.append(loss.item())
            s.updates += 1
            if s.average:
                s.average.update(s.student)

    def refresh(mix, prioritise, hardness: bool = True):
        if hardness and prioritise is not None and store.size:  # the student's KL to each stored label
            for a in range(0, store.size, 8192):
                b = min(a + 8192, store.size)
                obs = torch.as_tensor(store.obs[a:b]).to(device)
                store.hardness[a:b] = per_state_kl(s.policy, obs, store.teacher[a:b], c.tau).numpy()
        return [store.sampler(mix, prioritise)]

    def after_chunk(queries, sampler, mix, prioritise, stage, since):
        bar.update(queries)
        s.step = s.queries = budget.spent
        since[0] += queries
        since[1] += queries
        # New states join the draw every 512 (a new state carries its KL from when it was labelled); every stored
        # state's KL is measured again every 4,096.
        if mix is not None and (since[0] >= 512 or len(sampler[0]) == 0):
            sampler[0] = refresh(mix, prioritise, hardness=since[1] >= 4_096)[0]
            since[0] = 0
            since[1] = 0 if since[1] >= 4_096 else since[1]
        train(queries, sampler, mix)
        done = budget.left == 0
        row = s.log(held_pair, 1.0, done, callback and (lambda r: callback({**r, "stage": stage})))
        if row:
            bar.set_postfix(stage=stage, agree=f"{row['heldout/agreement']:.2f}")

    first = len(history)
    for stage in range(first, c.balance_stages):
        quota = min(quotas[stage], budget.left)
        report = domain_report(s.policy, held, c.tau) if stage else None
        if stage == 0:
            mix, tail, prioritise = None, np.zeros(n_dom, bool), None
        else:
            deficit = deficits(report, c.balance_deficit)
            if c.balance_rule == "fixed":
                mix = fixed_mix(deficit, natural)
            else:
                mix, log_weights = adaptive_mix(deficit, natural, log_weights, c.balance_eta)
            tail = (natural < c.balance_tail) & (bank.sizes() > 0) & (mix > 0)
            prioritise = ~tail
        head_q, tail_q = split_queries(quota, mix, tail) if stage else (quota, np.zeros(n_dom, int))
        sampler = refresh(mix, prioritise) if mix is not None else [None]
        since = [0, 0]
        rollout_left[:] = 0  # a stage's generation starts from its own tail states
        spent_before, generated, active = budget.spent, 0, 0
        tail_left = tail_q.copy()
        head_left = head_q
        while budget.spent - spent_before < quota:
            left = quota - (budget.spent - spent_before)
            want_tail = tail_left.sum() > 0 and (head_left <= 0 or rng.random() < tail_left.sum() / (
                tail_left.sum() + head_left))
            n = min(c.n_envs, left)
            if stage == 0:  # the teacher plays and labels: Rusu's collection
                obs = play.obs.copy()[:n]
                t_out = budget.label(teacher, torch.as_tensor(obs).to(device))
                dom = domain_ids(domain, env, obs, t_out)
                for i in range(n):
                    bank.offer(int(dom[i]), play.envs[i], rng)
                store.add(obs, t_out, dom, PLAY, stage)
                acts = epsilon_greedy(t_out.argmax(-1), env.n_actions, c.teacher_epsilon, rng)
                play.step(np.concatenate([acts, np.zeros(c.n_envs - n, np.int64)]) if n < c.n_envs else acts)
                env_steps += c.n_envs
            elif want_tail:  # the teacher plays on from restored tail states, labelling what it sees
                for i in range(c.n_envs):
                    if rollout_left[i] <= 0:
                        d = int(rng.choice(n_dom, p=tail_left / tail_left.sum()) if tail_left.sum() > 0 else
                                rng.choice(np.flatnonzero(tail)))
                        gen.obs[i] = gen.envs[i].load_state_bytes(bank.draw(d, rng))
                        rollout_left[i], rollout_domain[i] = c.balance_rollout, d
                obs = gen.obs.copy()[:n]
                t_out = budget.label(teacher, torch.as_tensor(obs).to(device))
                dom = domain_ids(domain, env, obs, t_out)
                for i in range(n):  # a generated state is paid from the quota of the domain its rollout began in
                    if tail[dom[i]]:
                        bank.offer(int(dom[i]), gen.envs[i], rng)
                    tail_left[rollout_domain[i]] -= 1
                tail_left = np.maximum(tail_left, 0)
                if tail_left.sum() == 0 and head_left <= 0:
                    head_left = quota - (budget.spent - spent_before)
                kl = per_state_kl(s.policy, torch.as_tensor(obs).to(device), t_out, c.tau).numpy()
                store.add(obs, t_out, dom, GENERATED, stage, kl)
                acts = epsilon_greedy(t_out.argmax(-1), env.n_actions, c.teacher_epsilon, rng)
                ended = gen.step(np.concatenate([acts, np.zeros(c.n_envs - n, np.int64)]) if n < c.n_envs else acts)
                rollout_left = np.where(ended, 0, rollout_left - 1)
                env_steps += c.n_envs
                generated += n
            else:  # the student plays; the teacher labels the state it is least sure of in each window
                seen, ent = [], []
                with torch.no_grad():
                    for _ in range(c.balance_screen):
                        logits = s.policy.logits(torch.as_tensor(play.obs).to(device)).float().cpu()
                        p = torch.softmax(logits, -1)
                        seen.append(play.obs.copy())
                        ent.append((-(p * torch.log(p.clamp_min(1e-12))).sum(-1)).numpy())
                        play.step(logits.argmax(-1).numpy())
                        env_steps += c.n_envs
                pick = np.argmax(np.stack(ent), axis=0)[:n]
                obs = np.stack([seen[k][i] for i, k in enumerate(pick)])
                t_out = budget.label(teacher, torch.as_tensor(obs).to(device))
                dom = domain_ids(domain, env, obs, t_out)
                kl = per_state_kl(s.policy, torch.as_tensor(obs).to(device), t_out, c.tau).numpy()
                store.add(obs, t_out, dom, ACTIVE, stage, kl)
                head_left -= n
                active += n
            after_chunk(n, sampler, mix, prioritise, stage, since)
        if stage == 0:
            counts = store.counts(n_dom, PLAY)
            natural = counts / max(counts.sum(), 1)
        after = domain_report(s.policy, held, c.tau)
        history.append({
            "stage": stage, "queries": budget.spent - spent_before, "teacher_queries": budget.spent,
            "updates": s.updates, "mix": None if mix is None else [float(x) for x in mix],
            "tail": [names[d] for d in np.flatnonzero(tail)], "generated": generated, "active": active,
            "played": (budget.spent - spent_before) if stage == 0 else 0,
            "deficit_before": None if report is None else _listed(deficits(report, c.balance_deficit)),
            "before": report, "after": after, "bank": bank.sizes().tolist()})
        s.checkpointer.save({"step": budget.spent, "updates": s.updates, "teacher_queries": budget.spent,
                             "wall_seconds": s.wall(), "eval_seconds": s.eval_seconds, "stages": history,
                             "natural": natural.tolist(), "env_steps": env_steps,
                             "log_weights": None if log_weights is None else [float(x) for x in log_weights],
                             **({"ema_updates": s.average.n} if s.average else {})})
    bar.close()
    if budget.spent > c.total_steps:  # QueryBudget refuses this; a last guard before the card says otherwise
        raise BudgetSpent(f"{budget.spent} teacher queries against a budget of {c.total_steps}")
    s.queries = budget.spent
    _save_tail_examples(s.run.file("tail_examples.safetensors"), store, names)
    card = s.finish(held_pair)
    final = domain_report(s.policy, held, c.tau)
    card.update({"env_steps": env_steps, "teacher_queries": budget.spent, "budget": c.total_steps,
                 "balanced": {"domain": c.balance_domain, "names": names, "rule": c.balance_rule,
                              "deficit": c.balance_deficit, "natural": natural.tolist(), "stages": history,
                              "final": final, "queries_by_source": {
                                  "heldout": c.heldout_size, "play": history[0]["queries"],
                                  "active": sum(h["active"] for h in history),
                                  "generated": sum(h["generated"] for h in history)}}})
    s.run.write_card(card)
    return card


def _save_tail_examples(path, store: LabelledStates, names: list[str], per_stage: int = 32) -> None:
    """Up to ``per_stage`` teacher-generated states per stage, evenly spread over the stage's (the notebook's
    frames), with their labels."""
    from safetensors.numpy import save_file

    n = store.size
    idx = np.flatnonzero(store.source[:n] == GENERATED)
    parts = [idx[store.stage[idx] == k] for k in np.unique(store.stage[idx])]  # spread over each stage's
    keep = np.concatenate([p[np.linspace(0, len(p) - 1, min(per_stage, len(p))).astype(int)] for p in parts]) if len(
        idx) else idx
    arrays = {"obs": np.ascontiguousarray(store.obs[keep]), "teacher": store.teacher[keep],
              "domain": store.domain[keep], "stage": store.stage[keep].astype(np.int64)}
    tmp = Path(str(path) + ".tmp")
    save_file(arrays, str(tmp), metadata={"format": "workbench-tail-examples/1", "names": ",".join(names)})
    tmp.replace(path)


def load_tail_examples(run: str | Path) -> dict:
    """The teacher-generated tail states a balanced run kept (``obs``, ``teacher``, ``domain``, ``stage``, ``names``)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = Path(run) / "tail_examples.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: {run} is not a finished balanced run "
                                "(`workbench distill --method balanced`)")
    with safe_open(str(path), "np") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "workbench-tail-examples/1":
        raise ValueError(f"{path} is not a file of tail examples (format {meta.get('format')!r})")
    return {**load_file(str(path)), "names": meta["names"].split(",")}


def stage_table(card: dict):
    """The card's stages as a DataFrame: a row per stage and domain with its natural share, the mix the stage
    trained on, the deficit it was chosen from and the recall and KL after the stage."""
    import pandas as pd

    b = card["balanced"]
    rows = []
    for h in b["stages"]:
        for d, name in enumerate(b["names"]):
            rows.append({"stage": h["stage"], "domain": name, "natural": b["natural"][d],
                         "mix": b["natural"][d] if h["mix"] is None else h["mix"][d],
                         "deficit": None if h["deficit_before"] is None else h["deficit_before"][d],
                         "tail": name in h["tail"], "recall_after": h["after"]["recall"][d],
                         "kl_after": h["after"]["kl"][d], "heldout_states": h["after"]["states"][d]})
    return pd.DataFrame(rows)
