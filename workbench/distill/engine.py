"""The engine every distillation method stands on: the pieces that single-game, real-time and multi-task
distillation (and any method after them) share, each written once.

- the teacher: ``load_teacher`` (checked against the env it was trained on) and its default temperature;
- acting and labelling: ``label_and_act`` queries the teacher once per state, and ``beta`` picks who acts;
- held-out measures: ``teacher_states`` (teacher-driven states on other seeds) and ``heldout`` (agreement and KL,
  ``evaluate.agreement``'s one definition, at the temperature the run distils with);
- the update: ``fit`` (one gradient step), ``StudentUpdater`` (a student's steps on a replay memory, one CUDA
  graph on a GPU) and ``WeightAverage`` (Polyak averaging of the student's weights);
- the bookkeeping: ``Schedule`` (when to log, evaluate and checkpoint), ``runs.Checkpointer`` (a run's weights,
  optimizers, memories and RNGs saved and restored by name; the teachers' loops use it too) and ``score_card`` (return, % of teacher by the one
  definition in ``evaluate.pct_of_teacher``).

A method module imports these and reads top to bottom as its own idea.
"""

from __future__ import annotations

import copy
import numpy as np
import torch

from ..envs import EnvSpec, make_env
from ..evaluate import EvalResult, agreement, check_fits, pct_of_teacher, random_returns
from ..hardware import device_of, label_stream
from ..runs import Run, load_policy, load_run_policy
from ..teachers import teacher_path
from ..trace import confusion

# Rusu's tau 0.01 sharpens a DQN's Q-values into its argmax. A policy's logits (a PPO teacher's, or a distilled
# student's used as a teacher) are its policy: sharpening throws away its second choices, and tau 1 copied MinAtar
# Asterix better at every student size measured (docs/lab-notes/data/asterix_tau_probe.csv: 86.3% against 97.2% over
# four games at tau 0.01 and 1).
DEFAULT_TAU = {"q": 0.01, "pi": 1.0}
KIND_OF_ALGO = {"dqn": "q", "ppo": "pi"}


def default_tau(teacher_card: dict) -> float:
    """The KL temperature for a teacher whose config does not set one: by what its outputs are (the card's
    ``kind``: Q-values or policy logits; an algorithm's where an older card has none)."""
    kind = teacher_card.get("kind") or KIND_OF_ALGO.get(str(teacher_card.get("algo")), "q")
    return DEFAULT_TAU[kind]


def load_teacher(path: str):
    """(policy, card, EnvSpec) of a teacher run folder or shipped teacher name. The policy must fit the env its run
    folder records (a checkpoint of another game left in the folder is refused by name)."""
    folder = teacher_path(path)
    run = Run(folder)
    card, config = run.card, run.config
    if "env_spec" not in config:
        raise ValueError(f"{folder}/config.json records no env_spec: {folder} is not a teacher run folder "
                         "(train one with `workbench train`, or give a shipped teacher's name)")
    env = EnvSpec.from_dict(config["env_spec"])
    policy, _, _ = load_run_policy(folder)
    check_fits(policy, env, f"the teacher in {folder}")
    return policy, card, env


# -- acting and labelling -----------------------------------------------------------------------------------------
def epsilon_greedy(act_B: np.ndarray, n_actions: int, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """``act_B`` with each action replaced by a uniformly random one with probability ``epsilon``."""
    return np.where(rng.random(len(act_B)) < epsilon, rng.integers(0, n_actions, len(act_B)), act_B)


@torch.no_grad()
def label_and_act(obs, teacher, rng: np.random.Generator, epsilon: float, student=None, beta: float = 1.0,
                  student_greedy: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(actions, teacher outputs) for a batch of states: the teacher is queried once per state, whoever acts.
    Without a student the teacher acts (epsilon-greedy); with one, each env's action is the teacher's with
    probability ``beta``, else the student's (Rusu: beta 1; student-driven: 0; DAgger-style: a schedule)."""
    with label_stream(device_of(teacher)):  # on a GPU, not queued behind the student's updates
        t_BA = teacher.logits(obs).cpu()
    t_act = epsilon_greedy(t_BA.argmax(-1).numpy(), t_BA.shape[-1], epsilon, rng)
    if student is None:
        return t_act, t_BA.numpy()
    teacher_acts = rng.random(len(t_act)) < beta
    # Where the teacher acts everywhere (beta 1: Rusu) a greedy student's forward pass would be thrown away; a
    # sampling student still draws, so that its torch RNG stream is the same whoever acted.
    if teacher_acts.all() and student_greedy:
        return t_act, t_BA.numpy()
    s_act = student.act(obs, greedy=student_greedy).cpu().numpy()
    return np.where(teacher_acts, t_act, s_act), t_BA.numpy()


def collect_step(collector, teacher, rng: np.random.Generator, epsilon: float, student=None, beta: float = 1.0,
                 student_greedy: bool = True) -> list[tuple[float, int]]:
    """One vector step into the collector's memory, the teacher's outputs stored beside each state."""
    labels: dict = {}

    def act(obs):
        actions, labels["teacher"] = label_and_act(obs, teacher, rng, epsilon, student, beta, student_greedy)
        return actions

    return collector.step(act, lambda obs: labels)


@torch.no_grad()
def teacher_states(teacher, env: EnvSpec, n: int, seed: int, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """n states from the teacher's own (epsilon-greedy) play on other seeds, with its outputs: a held-out set."""
    envs, _ = make_env(env.env_id, 4, seed, **env.settings)
    obs, _ = envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    states = []
    while sum(len(s) for s in states) < n:
        states.append(obs.copy())
        obs, *_ = envs.step(epsilon_greedy(teacher.act(obs).numpy(), env.n_actions, epsilon, rng))
    envs.close()
    obs_N = torch.as_tensor(np.concatenate(states)[:n]).to(device_of(teacher))
    return obs_N, teacher.logits(obs_N)


def measure_tau(loss: str, tau: float) -> float:
    """The temperature the held-out KL is measured at: the one the student is trained towards under KL, else 1."""
    return tau if loss in ("kl", "ppd") else 1.0


def heldout(student, teacher, heldout_set: tuple[torch.Tensor, torch.Tensor], loss: str, tau: float) -> dict:
    """Agreement and KL(teacher || student) on the held-out states (the teacher's outputs kept with them)."""
    return agreement(student, teacher, heldout_set[0], measure_tau(loss, tau), teacher_out=heldout_set[1])


# -- the update ---------------------------------------------------------------------------------------------------
def fit(optimizer, loss_fn, student_logits: torch.Tensor, teacher_out: torch.Tensor) -> float:
    """One gradient step of the distillation loss on a minibatch; returns the loss."""
    loss = loss_fn(student_logits, teacher_out)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def student_update(student, optimizer, loss_fn, memory, batch_size: int, rng: np.random.Generator) -> float:
    """One supervised step on a minibatch of stored (state, teacher output) pairs, on the student's device;
    returns the loss."""
    obs_B, extras = memory.sample_states(batch_size, rng, device_of(student))
    return fit(optimizer, loss_fn, student.logits(obs_B), extras["teacher"])


class StudentUpdater:
    """A student's supervised steps on minibatches of a replay memory (what :func:`student_update` does once),
    with the losses left on the student's device until :meth:`take_losses` reads them, so that a GPU does not wait
    for the host after each update.

    On a CUDA device the step becomes one CUDA graph: after ``WARMUP`` eager steps (on a side stream, as capture
    needs), the next step is captured, and each step after it copies its minibatch into the graph's fixed inputs
    and replays it: the same kernels on the same numbers, without a launch per layer and per weight (on an H200, a
    net3 KL update of batch 256 runs about 470 times a second eager and 1,675 as one graph). At the capture the
    optimizer (an Adam) is made capturable: its step counts move to the device. Where a capture fails, the error is
    shown once and the updates stay eager. On a CPU the steps are :func:`student_update`'s."""

    WARMUP = 3

    def __init__(self, student: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn, batch_size: int,
                 graph: bool = True):
        self.student, self.optimizer, self.loss_fn, self.batch_size = student, optimizer, loss_fn, batch_size
        self.device = device_of(student)
        self.graph = graph and self.device.type == "cuda"
        self.steps = 0
        self.losses: list[torch.Tensor] = []
        self._graph = self._inputs = self._loss = None
        self._stream = torch.cuda.Stream(self.device) if self.graph else None

    def __call__(self, memory, rng: np.random.Generator) -> None:
        obs_B, extras = memory.sample_states(self.batch_size, rng, self.device)
        target_BA = extras["teacher"]
        if self._graph is not None:
            self._inputs[0].copy_(obs_B)
            self._inputs[1].copy_(target_BA)
            self._graph.replay()
            self.losses.append(self._loss.detach().clone())
        elif self.graph and self.steps >= self.WARMUP:
            self._capture(obs_B, target_BA)
        elif self.graph:  # warm-up: eager, on the side stream that the capture will use
            self._stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self._stream):
                self._eager(obs_B, target_BA)
            torch.cuda.current_stream(self.device).wait_stream(self._stream)
        else:
            self._eager(obs_B, target_BA)
        self.steps += 1

    def _eager(self, obs_B: torch.Tensor, target_BA: torch.Tensor) -> None:
        loss = self.loss_fn(self.student.logits(obs_B), target_BA)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.losses.append(loss.detach())

    def _make_capturable(self) -> None:
        """Adam's step counts on the device, where a graph can count them (``runs.load_optimizer_arrays`` keeps a
        loading optimizer's own flag, so a checkpoint written after this resumes on a CPU)."""
        for group in self.optimizer.param_groups:
            group["capturable"] = True
            for p in group["params"]:
                state = self.optimizer.state.get(p, {})
                if torch.is_tensor(state.get("step")):
                    state["step"] = state["step"].to(device=p.device, dtype=torch.float32)

    def _capture(self, obs_B: torch.Tensor, target_BA: torch.Tensor) -> None:
        """Capture one step on these inputs (capture records, it does not run), then replay it: this step's update."""
        import warnings

        self._make_capturable()
        inputs = (obs_B.clone(), target_BA.clone())
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # the gradients are allocated in the graph's pool
        try:
            # The outer stream context restores the caller's stream even where a failed capture leaves
            # ``torch.cuda.graph``'s own stream context unexited.
            with torch.cuda.stream(self._stream), torch.cuda.graph(graph, stream=self._stream):
                loss = self.loss_fn(self.student.logits(inputs[0]), inputs[1])
                loss.backward()
                self.optimizer.step()
        except Exception as err:  # noqa: BLE001 - any capture failure: the run goes on eagerly, and says so
            cause = err.__context__ or err  # a failed capture's end raises too, hiding the first error
            warnings.warn(f"the student's update could not be captured as a CUDA graph ({cause}); it stays eager "
                          "(slower, same numbers)", RuntimeWarning, stacklevel=3)
            self.graph = False
            torch.cuda.synchronize(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            self._eager(obs_B, target_BA)
            return
        self._graph, self._inputs, self._loss = graph, inputs, loss
        graph.replay()
        self.losses.append(loss.detach().clone())

    @property
    def mode(self) -> str:
        """How the steps run: "cuda graph" once one is captured, else "eager"."""
        return "cuda graph" if self._graph is not None else "eager"

    def take_losses(self) -> list[float]:
        """The losses of the updates since the last call (one wait for the device, not one per update)."""
        out = torch.stack(self.losses).tolist() if self.losses else []
        self.losses = []
        return out


class WeightAverage:
    """An exponential moving average of a network's weights, updated after each optimizer step. The decay
    warms up as ``min(decay, (1 + n) / (10 + n))`` after n updates, so that the average does not hold on to the
    random initial weights in a short run. ``model`` is the averaged copy, a network of the same spec."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema (the weight-average decay) must be in (0, 1), e.g. 0.999, got {decay!r}; "
                             "0 turns the average off")
        self.decay, self.n = decay, 0
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        for avg, p in zip(self.model.parameters(), model.parameters()):
            avg.lerp_(p, 1.0 - d)
        for avg, b in zip(self.model.buffers(), model.buffers()):
            avg.copy_(b)
        self.n += 1


# -- bookkeeping --------------------------------------------------------------------------------------------------
class Schedule:
    """When a run logs, evaluates and checkpoints: every ``N`` env steps per named event (0: never), counted from
    the step the run (re)started at. ``due`` says whether an event is due at ``step`` and moves it on past it."""

    def __init__(self, start: int, **every: int):
        self.every = dict(every)
        self.next = {name: start + n if n > 0 else None for name, n in every.items()}

    def due(self, name: str, step: int, done: bool = False) -> bool:
        nxt = self.next[name]
        if nxt is None or step < nxt:
            return done
        while self.next[name] <= step:
            self.next[name] += self.every[name]
        return True


def score_card(result: EvalResult, teacher: EvalResult, env: EnvSpec, episodes: int, seed: int,
               random: float | None = None) -> dict:
    """The card's scores of a student against its teacher on the same seeds: return, % of teacher and which
    definition of it the figure uses (``evaluate.pct_of_teacher``; a random policy is played on the same seeds only
    where the definition needs it, unless its mean return ``random`` is given)."""
    if teacher.mean <= 0 and random is None:
        random = random_returns(env.env_id, env.n_actions, episodes, seed, env.settings).mean
    pct, kind = pct_of_teacher(result.mean, teacher.mean, random)
    out = {**result.summary("return"), "returns": result.returns.tolist(), "teacher_return_mean": teacher.mean,
           "teacher_return_std": teacher.std, "pct_of_teacher": pct, "pct_of_teacher_kind": kind}
    if random is not None:
        out["random_return_mean"] = random
    return out


@torch.no_grad()
def confusion_on_heldout(student_run, n_states: int = 2_000, seed: int = 20_000, epsilon: float = 0.05):
    """([A, A] counts of teacher action x student action, action names) on fresh teacher-driven states.
    ``student_run`` is a distillation run folder; its config names the teacher."""
    student_run = teacher_path(student_run)
    run = Run(student_run)
    if "teacher" not in run.config:
        raise ValueError(f"{student_run} is not a distillation run (its config names no teacher)")
    teacher, _, spec = load_teacher(run.config["teacher"])
    student = load_policy(student_run)
    check_fits(student, spec, f"the student in {student_run}")
    obs_N, t_NA = teacher_states(teacher, spec, n_states, seed, epsilon)
    s_NA = student.logits(obs_N)
    return confusion(t_NA.argmax(-1).cpu().numpy(), s_NA.argmax(-1).cpu().numpy(), spec.n_actions), list(spec.action_meanings)
