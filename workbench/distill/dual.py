"""Dual policy distillation (Lai, Zha, Li & Hu, IJCAI 2020, arXiv 2006.04061): two learners and no pre-trained
teacher. Each is a PPO agent (``agents.ppo.PPOLearner``) with its own envs and a memory of its recent states; every
``every`` of its updates it takes ``batch`` of its peer's recent states and distils towards its peer there, each state
weighted by how much better the peer is on it ("disadvantageous distillation").

Which weighting. The paper's objective (its Eq. 9-11) weights a state by the peer's advantage over the learner,
``w(s) = clip(exp(beta * (V_peer(s) - V_self(s))), w_min, w_max)`` normalised over the batch, and distils the peer's
*policy*: the learner moves towards the peer where the peer believes it does better, and ignores it where the peer is
worse. The authors' public code computes ``exp(scale * (V_self - V_peer))``, which read literally up-weights the states
where the learner is already the better one, and imitates the peer's *sampled actions*. This module implements the
paper (``weighting="paper"``: KL(peer || self) under the paper's weights), because the paper's argument for the method
(a learner gains from a peer only where the peer knows more) holds only for it; ``weighting="code"`` is the code read
literally (the reversed weights, the negative log-likelihood of the peer's sampled actions), so a benchmark can show
what the difference does.

A learner "is taught" at a distillation step when its peer's values stand above its own on average over the batch
(``V_peer - V_self > 0``): the card gives, per learner, the share of its distillation steps at which that held, and
the weights' statistics over time (mean, largest, smallest raw weight, and the largest normalised one: how much of the
batch one state carries). ``every=0`` turns distillation off: two independent learners, the benchmark's baseline.

The learners may differ in size (``width_a``, ``width_b``: a big and a small learner teaching each other).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..agents.common import finish_run, open_run, progress, saved_config, seed_everything
from ..agents.ppo import PPOConfig, PPOLearner, ppo_agent, ppo_config
from ..config import ConfigError, OnDevice, Preset, check
from ..envs import EnvSpec
from ..hardware import resolve_device
from ..runs import Checkpointer, Run

Weighting = Literal["paper", "code"]


@dataclass(frozen=True)
class DualConfig(OnDevice):
    FLAGS: ClassVar[dict] = {"env_id": "env"}

    env_id: str = "CartPole-v1"
    """Env id both learners play (each in its own envs)."""
    preset: Preset = "demo"
    """The PPO preset both learners start from (``agents.ppo.PPO_PRESETS``: the workbench's own defaults)."""
    seed: int = 0
    """Seeds both learners (learner b's envs and weights on seed + 1000)."""
    total_steps: int | None = None
    """Env steps of each learner (None: the PPO preset's)."""
    width_a: float = 1.0
    """Width of learner a's network (the PPO family base net times this)."""
    width_b: float = 1.0
    """Width of learner b's network: give another than a's for a big and a small learner teaching each other."""
    weighting: Weighting = "paper"
    """paper: weights exp(beta (V_peer - V_self)) and KL to the peer's policy; code: the authors' code read
    literally, exp(beta (V_self - V_peer)) and the peer's sampled actions (see the module docstring)."""
    beta: float = 0.5
    """Scale of the value difference in the weight (the authors' 0.5 for PPO)."""
    w_min: float = 0.01
    """Smallest weight before normalisation (the authors' clip)."""
    w_max: float = 100.0
    """Largest weight before normalisation."""
    every: int = 5
    """Distil after every this many PPO updates of a learner (the authors' K = 5); 0: never (independent learners)."""
    batch: int = 512
    """Peer states per distillation step (the authors' 512)."""
    distill_lr: float = 5e-5
    """Adam step size of the distillation step (the authors' 5e-5)."""
    distill_coef: float = 1.0
    """Weight of the distillation loss in that step."""
    memory: int = 10_000
    """Recent states each learner keeps for its peer to distil on."""
    log_every: int | None = None
    """Env steps (per learner) between metrics lines (None: the PPO preset's)."""
    checkpoint_every: int | None = None
    """Env steps (per learner) between resume checkpoints (None: the PPO preset's)."""
    eval_episodes: int = 30
    """Episodes of each learner's final evaluation (greedy, fixed seeds)."""
    eval_seed: int = 10_000
    """Env seed of the first evaluation episode."""
    ppo: dict = field(default_factory=dict)
    """Overrides of the PPO config of both learners (e.g. {"lr": 1e-3}; set in Python)."""

    def __post_init__(self):
        check(self, positive=("total_steps", "width_a", "width_b", "w_min", "w_max", "batch", "distill_lr", "memory",
                              "log_every", "checkpoint_every", "eval_episodes"),
              non_negative=("seed", "beta", "every", "distill_coef", "eval_seed"))
        if self.w_min > self.w_max:
            raise ConfigError(f"w_min (--w-min) {self.w_min} is above w_max (--w-max) {self.w_max}; give w_min <= "
                              "w_max (the authors' clip: 0.01 and 100)")
        if self.batch > self.memory:
            raise ConfigError(f"batch (--batch) {self.batch} is more than the memory (--memory) {self.memory} it is "
                              "drawn from; give a memory at least as large")
        bad = set(self.ppo) - {f.name for f in dataclasses.fields(PPOConfig)}
        if bad:
            raise ConfigError(f"ppo overrides {sorted(bad)} are not PPO config fields")


def learner_config(config: DualConfig, which: int) -> PPOConfig:
    """Learner a's (0) or b's (1) PPO config: the preset, the shared overrides, its own seed and width."""
    own = {"seed": config.seed + 1000 * which, "width": (config.width_a, config.width_b)[which],
           "eval_episodes": config.eval_episodes, "eval_seed": config.eval_seed}
    for name in ("total_steps", "log_every", "checkpoint_every"):
        if getattr(config, name) is not None:
            own[name] = getattr(config, name)
    return ppo_config(config.preset, config.env_id, device=config.device, **{**config.ppo, **own})


def distill_weights(v_self_B: torch.Tensor, v_peer_B: torch.Tensor, beta: float, w_min: float, w_max: float,
                    weighting: str = "paper") -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised weights [B] summing to 1, raw clipped weights [B]) of a batch of states. paper: exp(beta (V_peer -
    V_self)), large where the peer is better; code: exp(beta (V_self - V_peer)), the authors' code read literally."""
    if weighting not in ("paper", "code"):
        raise ValueError(f"weighting must be 'paper' or 'code', got {weighting!r}")
    diff_B = v_peer_B - v_self_B if weighting == "paper" else v_self_B - v_peer_B
    raw_B = torch.exp(beta * diff_B).clamp(w_min, w_max)
    return raw_B / raw_B.sum(), raw_B


class RecentStates:
    """The last ``capacity`` states a learner saw, for its peer to distil on (a ring; saved with the run)."""

    def __init__(self, capacity: int, obs_shape: tuple, dtype):
        self.states = np.zeros((capacity,) + tuple(obs_shape), dtype=dtype)
        self.pos = self.size = 0

    def add(self, obs_N: np.ndarray) -> None:
        obs_N = np.asarray(obs_N)[-len(self.states):]
        idx = (self.pos + np.arange(len(obs_N))) % len(self.states)
        self.states[idx] = obs_N
        self.pos = int((self.pos + len(obs_N)) % len(self.states))
        self.size = min(self.size + len(obs_N), len(self.states))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.states[rng.integers(0, self.size, n)]

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {"states": self.states, "pos_size": np.array([self.pos, self.size])}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.states[...] = arrays["states"]
        self.pos, self.size = (int(v) for v in arrays["pos_size"])


def distill_step(student: PPOLearner, peer: PPOLearner, obs_B: torch.Tensor, optimizer, config: DualConfig,
                 rng: np.random.Generator) -> dict:
    """One step of ``student`` towards ``peer`` on the peer's states; returns the step's statistics."""
    with torch.no_grad():
        peer_logits_BA, v_peer_B = peer.agent.logits_and_value(obs_B)
        _, v_self_B = student.agent.logits_and_value(obs_B)
    w_B, raw_B = distill_weights(v_self_B, v_peer_B, config.beta, config.w_min, config.w_max, config.weighting)
    student.agent.train()
    logits_BA, _ = student.agent.logits_and_value(obs_B)
    if config.weighting == "paper":  # KL(peer || self) per state
        log_p = F.log_softmax(peer_logits_BA, -1)
        per_state_B = (log_p.exp() * (log_p - F.log_softmax(logits_BA, -1))).sum(-1)
    else:  # the peer's sampled actions, as the authors' code imitates them
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        act_B = torch.multinomial(F.softmax(peer_logits_BA, -1).cpu(), 1, generator=gen).squeeze(-1)
        per_state_B = F.cross_entropy(logits_BA, act_B.to(logits_BA.device), reduction="none")
    loss = config.distill_coef * (w_B * per_state_B).sum()
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(student.agent.parameters(), student.config.max_grad_norm)
    optimizer.step()
    return {"loss": loss.item(), "w_mean": raw_B.mean().item(), "w_max": raw_B.max().item(),
            "w_min": raw_B.min().item(), "w_top": w_B.max().item(),
            "taught": float((v_peer_B - v_self_B).mean() > 0)}


NAMES = ("a", "b")


def distill_dual(config: DualConfig, out: str | Path, resume: bool = False, progress_bar: bool = True,
                 callback=None) -> dict:
    """Train the two learners side by side, each distilling from the other; writes ``out`` (the pair's config,
    metrics, checkpoint and card) with a run folder per learner (``out/a``, ``out/b``) and returns the pair's card."""
    seed_everything(config.seed)
    device = resolve_device(config.device)
    configs = [learner_config(config, i) for i in (0, 1)]
    learners = [PPOLearner(c, device) for c in configs]
    spec = learners[0].spec
    run = open_run(out, config, spec, resume, **learners[0].where)
    runs = [open_run(Path(out) / n, c, spec, resume, **lr.where) for n, c, lr in zip(NAMES, configs, learners)]
    memories = [RecentStates(config.memory, spec.obs_shape, spec.obs_dtype) for _ in learners]
    optims = [torch.optim.Adam(lr.agent.parameters(), lr=config.distill_lr) for lr in learners]
    rng = np.random.default_rng(config.seed + 7)
    ckpt = Checkpointer(run, nets={f"agent_{n}": lr.agent for n, lr in zip(NAMES, learners)},
                        optimizers={**{f"ppo_{n}": lr.optimizer for n, lr in zip(NAMES, learners)},
                                    **{f"distill_{n}": o for n, o in zip(NAMES, optims)}},
                        memories={f"recent_{n}": m for n, m in zip(NAMES, memories)}, rng=rng)
    history: list[dict] = []  # one row per distillation step
    wall_before = 0.0
    if resume and run.has_checkpoint():
        state = ckpt.restore()
        for lr, s in zip(learners, state["learners"]):
            lr.global_step, lr.update = s["global_step"], s["update"]
            lr.rng.bit_generator.state = s["rng"]
        wall_before, history = state["wall_seconds"], state["history"]
    for lr in learners:
        lr.start()
    c0 = configs[0]
    n_updates = min(lr.n_updates for lr in learners)
    recent: list[list[float]] = [[], []]
    t0 = time.perf_counter()
    next_log = learners[0].global_step + c0.log_every
    next_ckpt = learners[0].global_step + c0.checkpoint_every
    bar = progress(n_updates * learners[0].batch_size, learners[0].global_step, f"dual ppo {config.env_id}",
                   progress_bar)
    while learners[0].update < n_updates:
        for i, lr in enumerate(learners):
            lr.collect()
            recent[i] += lr.take_returns()
            memories[i].add(lr.obs_TB.reshape((-1,) + spec.obs_shape))
            lr.learn()
        bar.update(learners[0].batch_size)
        update = learners[0].update
        if config.every and update % config.every == 0:
            for i, (student, peer) in enumerate(zip(learners, learners[::-1])):
                obs_B = torch.as_tensor(memories[1 - i].sample(config.batch, rng), device=device)
                row = distill_step(student, peer, obs_B, optims[i], config, rng)
                history.append({"update": update, "env_steps": student.global_step, "learner": NAMES[i], **row})
        step, wall = learners[0].global_step, wall_before + time.perf_counter() - t0
        if step >= next_log or update == n_updates:
            row = {"wall_seconds": round(wall, 2)}
            since = [h for h in history if h["env_steps"] > step - c0.log_every]
            for i, n in enumerate(NAMES):
                own = {"charts/episodic_return": float(np.mean(recent[i])) if recent[i] else None,
                       "charts/episodes": len(recent[i])}
                mine = [h for h in since if h["learner"] == n]
                if mine:  # what its peer's states did to it since the last line
                    own.update({"dual/w_mean": float(np.mean([h["w_mean"] for h in mine])),
                                "dual/w_top": float(np.mean([h["w_top"] for h in mine])),
                                "dual/taught": float(np.mean([h["taught"] for h in mine])),
                                "losses/distill": float(np.mean([h["loss"] for h in mine]))})
                runs[i].log(step, **own, wall_seconds=round(wall, 2))
                row.update({f"{k}_{n}": v for k, v in own.items()})
            run.log(step, **row)
            if callback:
                callback({"step": step, **row})
            recent = [[], []]
            next_log += c0.log_every
        if step >= next_ckpt or update == n_updates:
            ckpt.save({"wall_seconds": wall, "history": history, "learners": [
                {"global_step": lr.global_step, "update": lr.update, "rng": lr.rng.bit_generator.state}
                for lr in learners]})
            next_ckpt += c0.checkpoint_every
    bar.close()
    wall = wall_before + time.perf_counter() - t0
    cards = []
    for lr, r, c in zip(learners, runs, configs):
        lr.envs.close()
        cards.append(finish_run(r, lr.policy(), c, spec, "ppo", lr.global_step, wall,
                                {"updates": lr.update, "dual": str(out), **lr.where}))
    card = pair_card(config, cards, history, wall)
    run.write_card(card)
    return card


def pair_card(config: DualConfig, cards: list[dict], history: list[dict], wall: float) -> dict:
    """The pair's card: both learners' returns and sizes, and what the distillation did (weights, taught shares)."""
    out = {"env_id": config.env_id, "algo": "dual-ppo", "weighting": config.weighting, "every": config.every,
           "seed": config.seed, "wall_seconds": round(wall, 1), "distill_steps": len(history) // 2}
    for n, c in zip(NAMES, cards):
        mine = [h for h in history if h["learner"] == n]
        out[n] = {"params": c["params"], "env_steps": c["env_steps"], "return_mean": c["return_mean"],
                  "return_std": c["return_std"], "return_n": c["return_n"],
                  "taught_share": float(np.mean([h["taught"] for h in mine])) if mine else None,
                  "w_mean": float(np.mean([h["w_mean"] for h in mine])) if mine else None,
                  "w_top_mean": float(np.mean([h["w_top"] for h in mine])) if mine else None}
    out["weights_over_time"] = [{k: h[k] for k in ("update", "env_steps", "learner", "w_mean", "w_max", "w_min",
                                                   "w_top", "taught")} for h in history]
    best = max(NAMES, key=lambda n: out[n]["return_mean"])
    out["best"] = best
    return out


# -- looking at a pair ----------------------------------------------------------------------------------------------
def load_agents(out: str | Path) -> tuple[list, EnvSpec]:
    """Both learners of a pair folder as they were at its last checkpoint, value heads included (a learner's own
    run folder ships the actor alone), and the env they play."""
    run = Run(out)
    config = DualConfig(**{k: v for k, v in saved_config(run.config, DualConfig()).items()
                           if k in {f.name for f in dataclasses.fields(DualConfig)}})
    spec = EnvSpec.from_dict(run.config["env_spec"])
    arrays, _ = run.load_checkpoint()
    agents = []
    for i, n in enumerate(NAMES):
        c = learner_config(config, i)
        agent = ppo_agent(c, spec.obs_shape, spec.n_actions)
        agent.load_state_dict({k.split(".", 1)[1]: torch.from_numpy(v.copy()) for k, v in arrays.items()
                               if k.startswith(f"agent_{n}.")})
        agents.append(agent.eval())
    return agents, spec


@torch.no_grad()
def teaching_states(out: str | Path, n_states: int = 2_000, top: int = 8, seed: int = 20_000,
                    beta: float | None = None) -> dict:
    """Where each learner teaches the other: on states of both learners' own play (epsilon 0.05, seeds from
    ``seed``), the ``top`` states with the largest paper weight in each direction. Returns, per direction ("a->b":
    a teaches b), the states, both learners' action probabilities and values there, and the weights."""
    from .engine import teacher_states  # the learners' own play, as a teacher's

    agents, spec = load_agents(out)
    beta = beta if beta is not None else Run(out).config.get("beta", 0.5)
    half = n_states // 2
    obs = torch.cat([teacher_states(a, spec, half, seed + 1000 * i, 0.05)[0] for i, a in enumerate(agents)])
    (la, va), (lb, vb) = (a.logits_and_value(obs) for a in agents)
    result = {"env_spec": spec}
    for name, v_teacher, v_student in (("a->b", va, vb), ("b->a", vb, va)):
        raw = torch.exp(beta * (v_teacher - v_student))
        idx = raw.argsort(descending=True)[:top]
        result[name] = {"states": obs[idx].cpu().numpy(), "probs_a": torch.softmax(la[idx], -1).cpu().numpy(),
                        "probs_b": torch.softmax(lb[idx], -1).cpu().numpy(), "value_a": va[idx].cpu().numpy(),
                        "value_b": vb[idx].cpu().numpy(), "weight": raw[idx].cpu().numpy(),
                        "share_peer_better": float((v_teacher > v_student).float().mean())}
    return result
