"""Dataset distillation: a handful of states with the teacher's outputs, from which a fresh student learns the
teacher in seconds.

A teacher's knowledge compresses into data as well as into a network. A *distilled set* is N states with a label
vector each (the teacher's logits, or labels found by search); a fresh student trains on it alone with one fixed
recipe (``fit_set``: Adam on the KL to the labels, full batch, ``train_steps`` steps). Four builders make one:

- ``random``: N states drawn at random from the teacher's own play (epsilon-greedy, the pool): the baseline.
- ``coreset``: k-center greedy on the teacher's penultimate features over the same pool: each new state is the one
  farthest (in the teacher's own representation) from those already chosen, so rare situations get a state.
- ``trajectory`` (Joshi, Ni & Mirzasoleiman, ICLR 2025; trajectory matching after Cazenavette et al. 2022): students
  distilled from the teacher on the pool are the experts; their weights are kept along their training. The synthetic
  states (continuous, kept in the observation's range) are learned so that a few SGD steps on them, from an expert's
  weights at one point of its training, land where the expert was some updates later. The labels stay the teacher's
  outputs on the synthetic states (the knowledge-distillation half of the idea: low-variance soft targets).
- ``evolved`` (Lupu et al., ICLR 2024, HaDES): states and labels are searched with evolution strategies for the return
  of a fresh student trained on them. It needs no teacher-labelled data: the teacher's play only seeds the search,
  and the fitness is the env's reward.

The file is safetensors (``states`` [N, *obs] float32, ``labels`` [N, A] float32) with its provenance as JSON in the
header (teacher, env, builder, size, seed, build seconds, teacher queries, the training recipe); ``load_set`` refuses
a file that is not one. ``workbench distill --from-dataset FILE`` trains a student from it into a run folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from torch.func import functional_call, vmap

from ..agents.common import progress, seed_everything
from ..config import ConfigError, OnDevice, check
from ..envs import EnvSpec, make_env
from ..hardware import device_of, place, resolve_device
from ..nets import Policy, build
from ..runs import CheckpointError, _atomic_save_arrays, _read_safetensors
from .engine import default_tau, epsilon_greedy, fit, load_teacher, teacher_states
from .losses import kl, kl_per_state

DISTILLED_DIR = Path(__file__).resolve().parents[2] / "data" / "distilled"
FORMAT = "workbench-distilled-set"
VERSION = 1
Builder = Literal["random", "coreset", "trajectory", "evolved"]
BUILDERS = ("random", "coreset", "trajectory", "evolved")
StudentNet = Literal["net1", "net2", "net3", "tiny"]


@dataclass(frozen=True)
class DatasetConfig(OnDevice):
    FLAGS: ClassVar[dict] = {"student_net": "preset-net"}

    teacher: str = "minatar-breakout"
    """Teacher run folder (or a shipped teacher's name)."""
    builder: Builder = "random"
    """random (a subset of the teacher's play), coreset (k-center on the teacher's features), trajectory (synthetic
    states matching distilled students' training trajectories) or evolved (states and labels searched for return)."""
    size: int = 64
    """States in the set (N)."""
    seed: int = 0
    """Seeds the pool's envs, the builder's draws and the students it trains."""
    student_net: StudentNet = "net3"
    """The student the set is built for and measured with, as a share of the teacher (net3: 4%)."""
    pool_size: int = 10_000
    """Teacher-driven states the set is drawn from (random, coreset), the experts learn from (trajectory) or the
    search starts from (evolved)."""
    teacher_epsilon: float = 0.05
    """Epsilon of the teacher's epsilon-greedy play that fills the pool."""
    train_steps: int = 300
    """Adam steps of a fresh student on the set (full batch): the recipe every set is measured with, and the one an
    evolved set's candidates are scored by."""
    train_lr: float = 3e-3
    """Adam step size of that training."""
    experts: int = 2
    """trajectory: students distilled from the teacher on the pool, whose weights along training are matched."""
    expert_updates: int = 1_000
    """trajectory: Adam updates (minibatches of 256 pool states) of each expert."""
    expert_lr: float = 0.1
    """trajectory: SGD step size of the experts."""
    expert_every: int = 50
    """trajectory: updates between kept expert weights."""
    match_span: int = 1
    """trajectory: kept weights ahead the inner steps must reach (span x expert_every expert updates)."""
    match_steps: int = 10
    """trajectory: SGD steps on the synthetic set that stand in for the span."""
    iterations: int = 200
    """trajectory: updates of the synthetic states."""
    state_lr: float = 0.05
    """trajectory: Adam step size of the synthetic states (observations scaled to [0, 1])."""
    generations: int = 20
    """evolved: generations of the evolution strategy."""
    population: int = 16
    """evolved: perturbed sets per generation (antithetic pairs; even)."""
    sigma: float = 0.3
    """evolved: standard deviation of the perturbations (of states in [0, 1] and of label logits)."""
    es_lr: float = 0.05
    """evolved: Adam step size of the search."""
    fitness_episodes: int = 3
    """evolved: episodes each candidate's student plays for its fitness."""
    fitness_max_steps: int = 500
    """evolved: env steps at which a fitness episode is cut (its return so far counts)."""

    def __post_init__(self):
        check(self, positive=("size", "pool_size", "train_steps", "train_lr", "experts", "expert_updates", "expert_lr",
                              "expert_every", "match_span", "match_steps", "iterations", "state_lr", "generations",
                              "population", "sigma", "es_lr", "fitness_episodes",
                              "fitness_max_steps"),
              non_negative=("seed",), probability=("teacher_epsilon",))
        if self.size > self.pool_size:
            raise ConfigError(f"size (--size) {self.size} is more than the pool (--pool-size) {self.pool_size} it is "
                              "drawn from; give a pool at least as large as the set")
        if self.population % 2:
            raise ConfigError(f"population (--population) must be even (antithetic pairs), got {self.population}")
        if self.expert_updates < self.expert_every * (self.match_span + 1):
            raise ConfigError(f"expert_updates (--expert-updates) {self.expert_updates} keeps fewer than "
                              f"match_span + 1 = {self.match_span + 1} weights {self.expert_every} updates apart; "
                              "give more expert updates or a shorter --match-span")


@dataclass
class DistilledSet:
    """N states with a label vector each (logits; the student matches softmax(labels / tau)) and where they came
    from."""
    states: torch.Tensor
    labels: torch.Tensor
    meta: dict

    @property
    def size(self) -> int:
        return len(self.states)

    @property
    def env(self) -> EnvSpec:
        return EnvSpec.from_dict(self.meta["env_spec"])

    @property
    def tau(self) -> float:
        return float(self.meta["tau"])


def save_set(path: str | Path, ds: DistilledSet) -> Path:
    """Write the set atomically (safetensors + the provenance as JSON in its header)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"a distilled set is a .safetensors file; give --out {path.with_suffix('.safetensors')}")
    _atomic_save_arrays(path, {"states": ds.states.detach().cpu().float().numpy(),
                               "labels": ds.labels.detach().cpu().float().numpy()},
                        {"format": FORMAT, "version": str(VERSION), "provenance": json.dumps(ds.meta)})
    return path


def load_set(path: str | Path) -> DistilledSet:
    """Read a set written by ``save_set``; anything else (a policy's weights, a pickle, a truncated file, a set of
    another version) is refused by name. Reading never runs code."""
    path = Path(path)
    if not path.exists():
        have = sorted(p.name for p in DISTILLED_DIR.glob("*.safetensors"))
        raise FileNotFoundError(f"no distilled set at {path}; make one with `workbench distill-dataset`, or give a "
                                f"shipped one: data/distilled/{{{', '.join(have)}}}")
    arrays, meta = _read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a distilled set (it holds "
                              f"{', '.join(sorted(arrays)) or 'no arrays'}; a set holds states and labels and says "
                              f"format {FORMAT}); make one with `workbench distill-dataset`")
    if meta.get("version") != str(VERSION):
        raise CheckpointError(f"{path} is a distilled set of version {meta.get('version')}; this workbench reads "
                              f"version {VERSION}: rebuild it with `workbench distill-dataset`")
    prov = json.loads(meta["provenance"])
    states, labels = torch.from_numpy(arrays["states"].copy()), torch.from_numpy(arrays["labels"].copy())
    env = EnvSpec.from_dict(prov["env_spec"])
    if tuple(states.shape[1:]) != tuple(env.obs_shape) or labels.shape != (len(states), env.n_actions):
        raise CheckpointError(f"{path}: states {tuple(states.shape)} and labels {tuple(labels.shape)} do not fit its "
                              f"env {env.env_id} (observations {tuple(env.obs_shape)}, {env.n_actions} actions); the "
                              "file was altered: rebuild it")
    return DistilledSet(states, labels, prov)


def shipped_set(teacher: str, size: int = 64) -> Path:
    """The shipped set of ``size`` states for a shipped teacher (``data/distilled/<teacher>-<size>.safetensors``)."""
    path = DISTILLED_DIR / f"{Path(teacher).name}-{size}.safetensors"
    if not path.exists():
        have = sorted(p.stem for p in DISTILLED_DIR.glob("*.safetensors"))
        raise FileNotFoundError(f"no shipped set {path.name}; shipped: {', '.join(have) or 'none'} (build one with "
                                "`workbench distill-dataset`)")
    return path


# -- training a student on a set: the one recipe ------------------------------------------------------------------
def fit_set(student: Policy, ds: DistilledSet, steps: int, lr: float | None = None, batch_size: int | None = None,
            seed: int = 0, optimizer=None, loss_fn=None) -> list[float]:
    """Train ``student`` on the set: ``steps`` steps (Adam at ``lr`` unless an ``optimizer`` is given) on the KL to its
    labels at the set's temperature (or ``loss_fn``), the whole set each step or minibatches of ``batch_size`` drawn
    with ``seed``. Returns the losses."""
    dev = device_of(student)
    states, labels = ds.states.to(dev), ds.labels.to(dev)
    optimizer = optimizer or torch.optim.Adam(student.parameters(), lr=lr)
    loss_fn = loss_fn or (lambda s, t: kl(s, t, ds.tau))
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        if batch_size and batch_size < len(states):
            idx = torch.randint(len(states), (batch_size,), generator=gen).to(dev)
            x, y = states[idx], labels[idx]
        else:
            x, y = states, labels
        losses.append(fit(optimizer, loss_fn, student.logits(x), y))
    return losses


def student_spec(config: DatasetConfig, teacher: Policy):
    """The student the set is built for: a size preset of the teacher's family (``distill.loop.student_spec_for``)."""
    from .loop import DistillConfig, student_spec_for

    return student_spec_for(DistillConfig(teacher=config.teacher, student_net=config.student_net), teacher.spec)


# -- the pool: the teacher's own play ----------------------------------------------------------------------------
POOL_SEED = 500_000  # env seeds of the pool, far from the evaluation seeds (10,000 on) and the held-out ones


@torch.no_grad()
def teacher_pool(teacher: Policy, env: EnvSpec, n: int, seed: int, epsilon: float, n_envs: int = 8):
    """(states [n, *obs] float32, teacher logits [n, A], states the teacher was queried on) from the teacher's
    epsilon-greedy play on env seeds ``POOL_SEED + 1000 * seed`` on."""
    envs, _ = make_env(env.env_id, n_envs, POOL_SEED + 1000 * seed, **env.settings)
    obs, _ = envs.reset(seed=POOL_SEED + 1000 * seed)
    rng = np.random.default_rng(seed)
    dev = device_of(teacher)
    states, logits, have = [], [], 0
    while have < n:
        o = torch.as_tensor(np.asarray(obs)).to(dev)
        t = teacher.logits(o)
        states.append(o.float().cpu())
        logits.append(t.cpu())
        have += len(o)
        obs, *_ = envs.step(epsilon_greedy(t.argmax(-1).cpu().numpy(), env.n_actions, epsilon, rng))
    envs.close()
    return torch.cat(states)[:n], torch.cat(logits)[:n], have


def obs_range(env: EnvSpec, pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where synthetic states may lie: [0, 1] for MinAtar's on/off channels, [0, 255] for Atari frames, else (vector
    observations) the pool's own per-feature range."""
    if len(env.obs_shape) == 3:
        hi = 255.0 if env.obs_dtype == "uint8" and env.family == "ale" else 1.0
        return torch.zeros(env.obs_shape), torch.full(env.obs_shape, hi)
    return pool.min(0).values, pool.max(0).values


# -- the builders ------------------------------------------------------------------------------------------------
def pick_random(pool: torch.Tensor, n: int, rng: np.random.Generator) -> torch.Tensor:
    return torch.as_tensor(rng.choice(len(pool), n, replace=False))


@torch.no_grad()
def k_center(features: torch.Tensor, n: int, rng: np.random.Generator) -> torch.Tensor:
    """Indices of n rows chosen greedily, each the farthest (Euclidean) from those chosen so far; the first is
    drawn with ``rng``. The standard 2-approximation of the k-center coreset (Sener & Savarese 2018)."""
    first = int(rng.integers(len(features)))
    chosen = [first]
    dist = torch.cdist(features, features[first:first + 1]).squeeze(1)
    for _ in range(n - 1):
        nxt = int(dist.argmax())
        chosen.append(nxt)
        dist = torch.minimum(dist, torch.cdist(features, features[nxt:nxt + 1]).squeeze(1))
    return torch.as_tensor(chosen)


def _params(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def _flat(params: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.reshape(-1) for p in params.values()])


def expert_trajectories(spec, pool: torch.Tensor, pool_logits: torch.Tensor, tau: float, config: DatasetConfig,
                        device, bar=None) -> list[list[dict[str, torch.Tensor]]]:
    """Students distilled from the teacher on the pool (KL, plain SGD at ``expert_lr``, minibatches of 256), their
    weights kept every ``expert_every`` updates: the trajectories the synthetic set must reproduce. SGD, not Adam, as
    in trajectory matching: the inner steps on the synthetic set are SGD steps, and an Adam expert's per-weight
    scaling sends it where no SGD step on any data points."""
    gen = torch.Generator().manual_seed(config.seed)
    runs = []
    for e in range(config.experts):
        net = build(spec, "pi", seed=config.seed * 1000 + e).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=config.expert_lr)
        kept = [_params(net)]
        for u in range(1, config.expert_updates + 1):
            idx = torch.randint(len(pool), (256,), generator=gen)
            loss = kl(net.logits(pool[idx].to(device)), pool_logits[idx].to(device), tau)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if u % config.expert_every == 0:
                kept.append(_params(net))
            if bar is not None:
                bar.update(1)
        runs.append(kept)
    return runs


def match_trajectories(teacher: Policy, spec, init: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                       experts: list, tau: float, config: DatasetConfig, device, bar=None) -> tuple[torch.Tensor, list]:
    """Learn synthetic states (starting from ``init``) whose few SGD steps, from an expert's kept weights, reach its
    weights ``match_span`` kept points later: the normalised distance ||theta_M - theta_{t+span}||^2 /
    ||theta_t - theta_{t+span}||^2 is minimised through the unrolled steps (``torch.func.functional_call``), with a
    learned inner step size. Returns the states and the losses."""
    net = build(spec, "pi", seed=0).to(device)
    scale = (hi - lo).clamp_min(1e-6).to(device)
    lo, hi = lo.to(device), hi.to(device)
    z = ((init.to(device) - lo) / scale).clone().requires_grad_(True)  # states in [0, 1] units
    names = list(experts[0][0])
    # The inner step size starts at the experts' own: on a handful of states the full-batch gradient is larger than a
    # minibatch's of the pool, and a start that covers the span's whole distance in match_steps overshot it by two
    # orders of magnitude on MinAtar Breakout. It is learned from there.
    log_lr = torch.tensor(math.log(config.expert_lr), device=device, requires_grad=True)
    opt = torch.optim.Adam([z], lr=config.state_lr)
    opt_lr = torch.optim.Adam([log_lr], lr=0.01)
    gen = torch.Generator().manual_seed(config.seed + 1)
    losses = []
    for _ in range(config.iterations):
        e = int(torch.randint(len(experts), (1,), generator=gen))
        t = int(torch.randint(len(experts[e]) - config.match_span, (1,), generator=gen))
        start, target = experts[e][t], experts[e][t + config.match_span]
        x = lo + z * scale
        labels = teacher.logits(x)  # the teacher's outputs move with the states
        params = {k: start[k].to(device).clone().requires_grad_(True) for k in names}
        lr = log_lr.exp()
        for _ in range(config.match_steps):
            loss = kl(functional_call(net, params, (x,)), labels, tau)
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
            params = {k: p - lr * g for (k, p), g in zip(params.items(), grads)}
        end, a, b = _flat(params), _flat(start).to(device), _flat(target).to(device)
        match = ((end - b) ** 2).sum() / ((a - b) ** 2).sum().clamp_min(1e-12)
        opt.zero_grad()
        opt_lr.zero_grad()
        match.backward()
        opt.step()
        opt_lr.step()
        with torch.no_grad():
            z.clamp_(0.0, 1.0)
        losses.append(match.item())
        if bar is not None:
            bar.update(1)
    return (lo + z.detach() * scale).cpu(), losses


def train_population(net: Policy, init: dict[str, torch.Tensor], states_P: torch.Tensor, labels_P: torch.Tensor,
                     tau: float, steps: int, lr: float) -> dict[str, torch.Tensor]:
    """P students at once, member p trained on its own set (states_P[p], labels_P[p]) from its own initial weights:
    one Adam over the stacked weights (Adam is elementwise, so each member's steps are its own)."""
    params = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    opt = torch.optim.Adam(list(params.values()), lr=lr)
    forward = vmap(lambda p, x: functional_call(net, p, (x,)))
    for _ in range(steps):
        loss = kl_per_state(forward(params, states_P), labels_P, tau).mean(-1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in params.items()}


@torch.no_grad()
def play_population(net: Policy, params: dict[str, torch.Tensor], env: EnvSpec, episodes: int, seed: int,
                    max_steps: int) -> np.ndarray:
    """Mean greedy return of each of the P stacked students over ``episodes`` episodes (env seeds seed ..
    seed + episodes - 1, the same for every member), each cut at ``max_steps`` steps."""
    P = next(iter(params.values())).shape[0]
    venv, _ = make_env(env.env_id, P * episodes, seed, **env.settings)
    obs, _ = venv.reset(seed=[seed + (i % episodes) for i in range(P * episodes)])
    dev = next(iter(params.values())).device
    forward = vmap(lambda p, x: functional_call(net, p, (x,)))
    ret = np.zeros(P * episodes)
    running = np.ones(P * episodes, dtype=bool)
    for _ in range(max_steps):
        o = torch.as_tensor(np.asarray(obs), device=dev).float().reshape(P, episodes, *env.obs_shape)
        act = forward(params, o).argmax(-1).reshape(-1).cpu().numpy()
        obs, r, term, trunc, _ = venv.step(act)
        ret += r * running
        running &= ~(term | trunc)
        if not running.any():
            break
    venv.close()
    return ret.reshape(P, episodes).mean(1)


def evolve(spec, init_states: torch.Tensor, init_labels: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
           env: EnvSpec, config: DatasetConfig, device, bar=None) -> tuple[torch.Tensor, torch.Tensor, list]:
    """OpenAI-ES with antithetic pairs and centred ranks over (states in [0, 1] units, label logits); a candidate's
    fitness is the return of a fresh student trained on it (``fit_set``'s recipe: ``train_steps`` Adam steps, from
    weights drawn anew each generation and the same for every candidate), over ``fitness_episodes`` episodes on the
    same seeds for all. The set kept is the search mean that scored best (the mean is scored beside the candidates
    each generation). Returns (states, labels, per-generation rows)."""
    net = build(spec, "pi", seed=0).to(device)
    scale = (hi - lo).clamp_min(1e-6)
    theta = torch.cat([((init_states - lo) / scale).reshape(-1), init_labels.reshape(-1)]).to(device)
    n_s = init_states.numel()
    theta = theta.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=config.es_lr)
    gen = torch.Generator().manual_seed(config.seed + 2)
    half = config.population // 2
    best, history = (-math.inf, None), []

    def unpack(flat_P):  # [P, D] -> states [P, N, *obs], labels [P, N, A]
        s = flat_P[:, :n_s].clamp(0, 1).reshape(-1, *init_states.shape) * scale.to(device) + lo.to(device)
        return s, flat_P[:, n_s:].reshape(-1, *init_labels.shape)

    for g in range(config.generations):
        eps = torch.randn(half, theta.numel(), generator=gen).to(device)
        cands = torch.cat([theta.detach()[None], theta.detach() + config.sigma * eps,
                           theta.detach() - config.sigma * eps])
        states_P, labels_P = unpack(cands)
        fresh = _params(build(spec, "pi", seed=config.seed * 100_000 + g))  # one draw for every candidate
        inits = {k: v.expand(len(cands), *v.shape).to(device) for k, v in fresh.items()}
        trained = train_population(net, inits, states_P, labels_P, 1.0, config.train_steps, config.train_lr)
        fit = play_population(net, trained, env, config.fitness_episodes, POOL_SEED + 7 * g + 1000 * config.seed,
                              config.fitness_max_steps)
        mean_fit, pop = float(fit[0]), fit[1:]
        if mean_fit > best[0]:
            best = (mean_fit, theta.detach().clone())
        ranks = np.empty(len(pop))
        ranks[np.argsort(pop)] = np.arange(len(pop))
        ranks = torch.as_tensor(ranks / (len(pop) - 1) - 0.5, dtype=torch.float32, device=device)
        grad = (ranks[:half] - ranks[half:]) @ eps / (config.population * config.sigma)
        opt.zero_grad()
        theta.grad = -grad  # ascent
        opt.step()
        with torch.no_grad():
            theta[:n_s].clamp_(0, 1)
        history.append({"generation": g, "mean_fitness": mean_fit, "best_candidate": float(pop.max()),
                        "population_mean": float(pop.mean())})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(fitness=f"{mean_fit:.1f}")
    s, lab = unpack(best[1][None])
    return s[0].cpu(), lab[0].cpu(), history


def build_set(config: DatasetConfig, progress_bar: bool = True, pool=None) -> DistilledSet:
    """Build a set of ``config.size`` states for ``config.teacher`` with ``config.builder``. ``pool``: the
    ``teacher_pool`` of this teacher and config (a benchmark builds many sets from one; it is counted in each set's
    teacher queries all the same)."""
    seed_everything(config.seed)
    device = resolve_device(config.device)
    t0 = time.perf_counter()
    teacher, card, env = load_teacher(config.teacher)
    teacher.eval()
    teacher.requires_grad_(False)
    place(device, None, teacher)
    spec = student_spec(config, teacher)
    if config.builder in ("trajectory", "evolved") and spec.family == "nature_cnn":
        raise ConfigError(f"builder {config.builder} unrolls or evolves students on every step of its search; on "
                          "Atari frames that is a GPU job this version does not run: use --builder random or coreset")
    tau = default_tau(card)
    rng = np.random.default_rng(config.seed)
    pool, pool_logits, queries = pool or teacher_pool(teacher, env, config.pool_size, config.seed,
                                                      config.teacher_epsilon)
    lo, hi = obs_range(env, pool)
    extra: dict = {}
    if config.builder == "random":
        idx = pick_random(pool, config.size, rng)
        states, labels = pool[idx], pool_logits[idx]
    elif config.builder == "coreset":
        with torch.no_grad():
            feats = torch.cat([teacher.features(pool[i:i + 4096].to(device)).cpu()
                               for i in range(0, len(pool), 4096)])
        idx = k_center(feats, config.size, rng)
        states, labels = pool[idx], pool_logits[idx]
    elif config.builder == "trajectory":
        bar = progress(config.experts * config.expert_updates + config.iterations, 0, "trajectory", progress_bar)
        experts = expert_trajectories(spec, pool, pool_logits, tau, config, device, bar)
        init = pool[pick_random(pool, config.size, rng)]
        states, losses = match_trajectories(teacher, spec, init, lo, hi, experts, tau, config, device, bar)
        bar.close()
        with torch.no_grad():
            labels = teacher.logits(states.to(device)).cpu()
        queries += config.iterations * config.size + config.size
        extra = {"match_loss_first": float(np.mean(losses[:10])), "match_loss_last": float(np.mean(losses[-10:]))}
    else:
        idx = pick_random(pool, config.size, rng)
        bar = progress(config.generations, 0, "evolve", progress_bar)
        # Labels start at the teacher's tempered outputs (tau 1 from here on: the labels are free logits).
        states, labels, history = evolve(spec, pool[idx], pool_logits[idx] / tau, lo, hi, env, config, device, bar)
        bar.close()
        tau = 1.0
        extra = {"generations": history}
    meta = {
        "teacher": config.teacher, "teacher_env_id": card.get("env_id"), "teacher_params": teacher.n_params,
        "teacher_return_mean": card.get("return_mean"), "env_spec": env.to_dict(), "builder": config.builder,
        "size": config.size, "seed": config.seed, "tau": tau,
        "labels": "evolved logits" if config.builder == "evolved" else "teacher logits",
        "teacher_queries": int(queries), "build_seconds": round(time.perf_counter() - t0, 2),
        "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "train": {"student_net": config.student_net, "steps": config.train_steps, "lr": config.train_lr},
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "device"}, **extra,
    }
    return DistilledSet(states.float(), labels.float(), meta)


def distill_dataset(config: DatasetConfig, out: str | Path, progress_bar: bool = True) -> DistilledSet:
    """Build the set and write it to ``out`` (a new .safetensors file: an existing one is refused, not replaced)."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out}: a distilled set is a .safetensors file; give {out.with_suffix('.safetensors')}")
    if out.exists():
        raise FileExistsError(f"{out} exists; give another --out (a set is never overwritten)")
    ds = build_set(config, progress_bar)
    save_set(out, ds)
    return ds


# -- a student from a set alone -------------------------------------------------------------------------------------
def check_set_fits(ds: DistilledSet, env: EnvSpec, teacher: str, path) -> None:
    """Refuse a set made for another game than the teacher's (its states would be another env's observations)."""
    mine = ds.env
    if (mine.env_id, tuple(mine.obs_shape), mine.n_actions) != (env.env_id, tuple(env.obs_shape), env.n_actions):
        raise ValueError(f"{path} is a set for {mine.env_id} (observations {tuple(mine.obs_shape)}, {mine.n_actions} "
                         f"actions), but the teacher {teacher} plays {env.env_id}; leave out --teacher (the set's own, "
                         f"{ds.meta['teacher']}) or give a set built for this teacher")


def distill_from_set(config, out: str | Path, resume: bool = False, progress_bar: bool = True,
                     callback=None) -> dict:
    """``distill`` with ``config.from_dataset``: a fresh student trained only on the set's states and labels (no env
    step, no teacher query), by the set's recorded recipe unless the config says otherwise (``set_steps``, ``lr``),
    then measured like every student: held-out agreement with the teacher and the card's return against it."""
    from .loop import StudentRun

    seed_everything(config.seed)
    ds = load_set(config.from_dataset)
    device = resolve_device(config.device)
    teacher, card, env = load_teacher(config.teacher)
    teacher.eval()
    place(device, None, teacher)
    check_set_fits(ds, env, config.teacher, config.from_dataset)
    recipe = ds.meta.get("train", {})
    # The set's temperature is its labels' (1 for an evolved set's free logits): a config's own tau wins.
    config = dataclasses.replace(config, tau=config.tau or ds.tau, lr=config.lr or recipe.get("lr"),
                                 set_steps=config.set_steps or recipe.get("steps"))
    s = StudentRun(config, out, teacher, card, env, device, resume, dataset=str(config.from_dataset),
                   dataset_builder=ds.meta["builder"], dataset_size=ds.size, dataset_seed=ds.meta["seed"],
                   dataset_teacher_queries=ds.meta.get("teacher_queries"))
    config = s.config
    held = teacher_states(teacher, env, config.heldout_size, config.seed + 777_777, config.teacher_epsilon)
    s.start(time.perf_counter())
    bar = progress(config.set_steps, 0, f"distill from {ds.size} states", progress_bar)
    every = max(1, config.set_steps // 20)  # about 20 points on a live curve, each a held-out measure
    for u in range(1, config.set_steps + 1):
        loss = fit_set(s.student, ds, 1, batch_size=config.batch_size, seed=config.seed + u, optimizer=s.optimizer,
                       loss_fn=s.loss_fn)[0]
        s.updates = u
        if s.average:
            s.average.update(s.student)
        bar.update(1)
        s.losses.append(loss)
        if callback is not None and (u % every == 0 or u == 1) and u < config.set_steps:
            # Metrics rows count updates here: no env step is taken. Measuring is left out of train_seconds.
            t_eval = time.perf_counter()
            row = {"losses/distill": float(np.mean(s.losses)), "charts/updates": u,
                   **{f"heldout/{k}": v for k, v in s.heldout(held).items()}}
            s.eval_seconds += time.perf_counter() - t_eval
            s.run.log(u, **row)
            callback({"step": u, **row})
            s.losses = []  # each row's loss is the mean over the updates since the last
    bar.close()
    s.step = config.set_steps  # the final row's step: the update count, as above
    row = s.log(held, 0.0, True, callback)
    s.step = 0
    card = s.finish(held)
    card["train_seconds"] = row["train_seconds"]
    s.run.write_card(card)
    return card
