"""Network families with a size knob, and the one policy interface every teacher and student speaks.

Three families, each built from a JSON-able :class:`NetSpec` so a checkpoint rebuilds its own network:

- ``nature_cnn``: the Nature-DQN trunk (Mnih et al. 2015) for 84x84x4 Atari frames;
- ``minatar_cnn``: the MinAtar paper's trunk (Young & Tian 2019): one 3x3 conv, one hidden layer;
- ``mlp``: fully connected, for classic control.

Rusu et al. (2016) name their students by the Nature-DQN sizes: ``teacher``, ``net1`` (25%), ``net2`` (7%),
``net3`` (4%); Sun & Fazli (2019) go down to 1.7% (``tiny``). For the Nature CNN those are exact layer sizes;
for the other families a preset means "the same share of this teacher's parameters", found by a search
over the width knob (:func:`spec_for_fraction`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import torch
from torch import nn

FAMILIES = ("nature_cnn", "minatar_cnn", "mlp")
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
CRITICS = ("head", "separate")

# Layer sizes from Rusu et al. 2016, Table 1 (conv channels, hidden units); the teacher is Nature DQN.
RUSU_NATURE = {
    "teacher": ((32, 64, 64), (512,)),
    "net1": ((16, 32, 32), (256,)),
    "net2": ((16, 16, 16), (128,)),
    "net3": ((16, 16, 16), (64,)),
    # Not in Rusu: the smallest student of Sun & Fazli 2019 (1.7%), 1.76% of Nature DQN with 18 actions.
    "tiny": ((16, 16, 16), (24,)),
}
# Share of the teacher's parameters that each preset stands for (from the 18-action Nature sizes).
PRESET_FRACTIONS = {"teacher": 1.0, "net1": 0.2527, "net2": 0.0669, "net3": 0.0366, "tiny": 0.017}

# Base sizes at width 1.0 for the families without published student sizes.
BASE = {
    "nature_cnn": RUSU_NATURE["teacher"],
    # The MinAtar paper's DQN: 16 channels, 128 hidden units.
    "minatar_cnn": ((16,), (128,)),
    "mlp": ((), (256, 256)),
}


@dataclass(frozen=True)
class NetSpec:
    """Everything that rebuilds a network: saved as JSON beside its weights."""

    family: str
    """One of FAMILIES."""
    obs_shape: tuple[int, ...]
    """Observation shape, channels first (C, H, W) for images, (D,) for vectors."""
    n_actions: int
    """Size of the output layer."""
    conv: tuple[int, ...] = ()
    """Conv channels per layer (empty for mlp)."""
    hidden: tuple[int, ...] = ()
    """Hidden units per fully connected layer."""
    obs_scale: float = 1.0
    """Observations are divided by this before the first layer (255 for uint8 Atari frames)."""
    value_head: bool = False
    """An extra scalar head for a critic (PPO); it is not counted as acting parameters."""
    activation: str = "relu"
    """Nonlinearity after each fully connected hidden layer: relu, or tanh (Stable-Baselines3's and cleanrl's
    actor-critic MLPs). Conv layers are always followed by a ReLU."""
    critic: str = "head"
    """Where the critic (``value_head``) reads from: ``head``, a linear head on the actor's trunk (cleanrl's Atari
    agent, PPD students); ``separate``, its own trunk of the same layers (cleanrl's ``ppo.py`` and SB3's MlpPolicy: on
    Acrobot a shared trunk's value loss, at returns of -100, swamps the policy's features)."""

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown network family {self.family!r}; choose one of {FAMILIES}")
        object.__setattr__(self, "obs_shape", tuple(int(x) for x in self.obs_shape))
        object.__setattr__(self, "conv", tuple(int(x) for x in self.conv))
        object.__setattr__(self, "hidden", tuple(int(x) for x in self.hidden))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}")
        if self.critic not in CRITICS:
            raise ValueError(f"unknown critic {self.critic!r}; choose one of {CRITICS}")
        if self.family == "mlp" and self.conv:
            raise ValueError("an mlp has no conv layers; leave conv empty")
        if self.family == "nature_cnn" and len(self.conv) != 3:
            raise ValueError("nature_cnn needs exactly three conv layers (kernels 8/4, 4/2, 3/1)")

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        for name, default in (("activation", "relu"), ("critic", "head")):
            if d[name] == default:  # the specs written before the field existed read the same
                del d[name]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "NetSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"net spec has unknown fields {sorted(unknown)}: is this a workbench checkpoint?")
        return cls(**d)


def _trunk(spec: NetSpec) -> tuple[nn.Module, int]:
    """The shared body of a family; returns (module, number of features it outputs)."""
    layers: list[nn.Module] = []
    if spec.family == "nature_cnn":
        c, h, w = spec.obs_shape
        for out, (k, s) in zip(spec.conv, ((8, 4), (4, 2), (3, 1))):
            layers += [nn.Conv2d(c, out, k, s), nn.ReLU()]
            c, h, w = out, (h - k) // s + 1, (w - k) // s + 1
        n = c * h * w
        layers.append(nn.Flatten())
    elif spec.family == "minatar_cnn":
        c, h, w = spec.obs_shape
        for out in spec.conv:
            layers += [nn.Conv2d(c, out, 3, 1), nn.ReLU()]
            c, h, w = out, h - 2, w - 2
        n = c * h * w
        layers.append(nn.Flatten())
    else:
        n = int(math.prod(spec.obs_shape))
        layers.append(nn.Flatten())
    for units in spec.hidden:
        layers += [nn.Linear(n, units), ACTIVATIONS[spec.activation]()]
        n = units
    return nn.Sequential(*layers), n


class Policy(nn.Module):
    """The one policy interface: ``logits(obs) -> [B, A]``, ``act(obs, greedy)``, ``n_params``.

    ``kind`` says what the logits are: ``"q"`` (a DQN's action values) or ``"pi"`` (policy logits).
    Observations come in as numpy or torch, uint8 or float, channels first; the net scales them.
    """

    def __init__(self, spec: NetSpec, kind: str = "pi"):
        super().__init__()
        if kind not in ("q", "pi"):
            raise ValueError(f"policy kind must be 'q' or 'pi', got {kind!r}")
        self.spec, self.kind = spec, kind
        self.trunk, n = _trunk(spec)
        self.head = nn.Linear(n, spec.n_actions)
        self.value: nn.Module | None = None
        if spec.value_head and spec.critic == "separate":
            critic_trunk, n_critic = _trunk(spec)
            self.value = nn.Sequential(critic_trunk, nn.Linear(n_critic, 1))
        elif spec.value_head:
            self.value = nn.Linear(n, 1)

    @property
    def n_actions(self) -> int:
        return self.spec.n_actions

    @property
    def n_params(self) -> int:
        """Parameters needed to act (trunk + action head); a critic head is training-only."""
        return n_params(self.trunk) + n_params(self.head)

    def features(self, obs) -> torch.Tensor:
        return self.trunk(self._input(obs))

    def _input(self, obs) -> torch.Tensor:
        """Observations as the first layer takes them: float, scaled, on the net's device."""
        obs_B = torch.as_tensor(obs, device=self.head.weight.device)
        if self.spec.family == "nature_cnn":
            # Same numbers up to float rounding, other layout: oneDNN's channels-last convs train a Nature CNN about
            # 1.5x faster on a CPU (`workbench bench` -> nature_cnn_layout). Reordered while still uint8: a quarter of
            # the bytes.
            obs_B = obs_B.contiguous(memory_format=torch.channels_last)
        x = obs_B.float()
        if self.spec.obs_scale != 1.0:
            # In place where ``float`` made a copy (frames come as uint8): the same numbers, one allocation fewer.
            x = x.div_(self.spec.obs_scale) if x is not obs_B else x / self.spec.obs_scale
        return x

    def logits(self, obs) -> torch.Tensor:
        """[B, *obs_shape] -> [B, A]: Q-values for kind 'q', policy logits for kind 'pi'."""
        return self.head(self.features(obs))

    def logits_and_value(self, obs) -> tuple[torch.Tensor, torch.Tensor]:
        if self.value is None:
            raise RuntimeError("this network has no value head (build it with value_head=True)")
        x = self._input(obs)
        h_BF = self.trunk(x)
        return self.head(h_BF), self.value(x if self.spec.critic == "separate" else h_BF).squeeze(-1)

    def forward(self, obs) -> torch.Tensor:
        return self.logits(obs)

    @torch.no_grad()
    def act(self, obs, greedy: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """Actions [B] on the CPU (where envs take them): argmax if greedy, else a sample from softmax(logits) (for
        'q', greedy always), drawn on the CPU so that a ``generator`` gives the same actions on any device."""
        logits_BA = self.logits(obs).cpu()
        if greedy or self.kind == "q":
            return logits_BA.argmax(-1)
        probs_BA = torch.softmax(logits_BA, -1)
        return torch.multinomial(probs_BA, 1, generator=generator).squeeze(-1)


def n_params(net: nn.Module) -> int:
    """Number of parameters (a Policy counts only what it needs to act)."""
    if isinstance(net, Policy):
        return net.n_params
    return sum(p.numel() for p in net.parameters())


def compression(student: nn.Module, teacher: nn.Module) -> float:
    """Student parameters over teacher parameters (Rusu's "share of teacher")."""
    return n_params(student) / n_params(teacher)


def spec_params(spec: NetSpec) -> int:
    """Acting parameters of the network a spec builds, without building it."""
    return Policy(dataclasses.replace(spec, value_head=False)).n_params


def family_for_obs(obs_shape: tuple[int, ...]) -> str:
    """The natural family for an observation shape: Atari frames, MinAtar grids, or vectors."""
    if len(obs_shape) == 3 and obs_shape[1] >= 36:
        return "nature_cnn"
    if len(obs_shape) == 3:
        return "minatar_cnn"
    return "mlp"


def make_spec(
    obs_shape, n_actions: int, family: str | None = None, width: float = 1.0, obs_scale: float | None = None,
    value_head: bool = False,
) -> NetSpec:
    """A family's base network with every conv and hidden layer scaled by ``width`` (at least 1 unit)."""
    family = family or family_for_obs(tuple(obs_shape))
    if family not in BASE:
        raise ValueError(f"unknown network family {family!r}; choose one of {FAMILIES}")
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    conv, hidden = BASE[family]
    scale = obs_scale if obs_scale is not None else (255.0 if family == "nature_cnn" else 1.0)
    return NetSpec(
        family, tuple(obs_shape), n_actions,
        conv=tuple(max(1, round(c * width)) for c in conv),
        hidden=tuple(max(1, round(u * width)) for u in hidden),
        obs_scale=scale, value_head=value_head,
    )


def parse_layers(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """'CONV:HIDDEN' -> (conv channels, hidden units): '8:16', '8,8:26', ':64,64' (an mlp has no conv layers)."""
    conv, sep, hidden = str(text).partition(":")
    try:
        if not sep:
            raise ValueError
        layers = tuple(tuple(int(x) for x in part.split(",") if x.strip()) for part in (conv, hidden))
    except ValueError:
        raise ValueError(f"layers must read CONV:HIDDEN, comma-separated widths on each side (e.g. 8:16, 8,8:26 "
                         f"or :64,64 for an mlp), got {text!r}") from None
    if any(n < 1 for part in layers for n in part):
        raise ValueError(f"every layer needs at least one unit, got {text!r}")
    return layers


def format_layers(spec: NetSpec) -> str:
    """A spec's layer widths as parse_layers reads them: '4:34', '16,16,16:24', ':30,30'."""
    return ",".join(map(str, spec.conv)) + ":" + ",".join(map(str, spec.hidden))


def size_tag(net: str, layers: str | None = None) -> str:
    """A student size as run folders name it: 'tiny', or 'tiny@8x16' (':30,30' -> 'x30_30') with its own layers."""
    return net if layers is None else f"{net}@{layers.replace(':', 'x').replace(',', '_')}"


def spec_for_fraction(teacher: NetSpec, fraction: float) -> NetSpec:
    """The student of the teacher's family whose acting parameters come closest to ``fraction`` of its own.

    Widths are searched on a fine log grid: parameter count grows monotonically (roughly quadratically) in
    width, so the closest grid point is within a fraction of a percent for every realistic size.
    """
    if not 0 < fraction <= 4:
        raise ValueError(f"fraction must be in (0, 4], got {fraction}")
    target = fraction * spec_params(teacher)
    best, best_err = None, math.inf
    for i in range(-600, 121):
        width = 2 ** (i / 60)
        cand = make_spec(teacher.obs_shape, teacher.n_actions, teacher.family, width, teacher.obs_scale)
        err = abs(math.log(spec_params(cand) / target))
        if err < best_err:
            best, best_err = cand, err
    return best


def preset_spec(name: str, teacher: NetSpec) -> NetSpec:
    """A named student size for this teacher: Rusu's exact layers on the Nature CNN, the same share elsewhere."""
    if name not in PRESET_FRACTIONS:
        raise ValueError(f"unknown student preset {name!r}; choose one of {sorted(PRESET_FRACTIONS)}")
    if teacher.family == "nature_cnn" and teacher.conv == RUSU_NATURE["teacher"][0]:
        conv, hidden = RUSU_NATURE[name]
        return NetSpec("nature_cnn", teacher.obs_shape, teacher.n_actions, conv, hidden, teacher.obs_scale)
    if name == "teacher":
        return dataclasses.replace(teacher, value_head=False)
    return spec_for_fraction(teacher, PRESET_FRACTIONS[name])


INITS = ("torch", "orthogonal")


def build(spec: NetSpec, kind: str = "pi", seed: int | None = None, init: str = "torch") -> Policy:
    """Build a network; with a seed its initial weights are the same on every call. ``init``: ``torch``, PyTorch's
    default initialisation; ``orthogonal``, the actor-critic initialisation of cleanrl and SB3 (orthogonal weights of
    gain sqrt(2), zero biases, the action head at gain 0.01 so that the first policy is near uniform, the value head at
    gain 1)."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
    if seed is None:
        return _init(Policy(spec, kind), init)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _init(Policy(spec, kind), init)


@torch.no_grad()
def _init(net: Policy, init: str) -> Policy:
    if init == "torch":
        return net
    value_out = net.value[-1] if isinstance(net.value, nn.Sequential) else net.value
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            gain = 0.01 if m is net.head else 1.0 if m is value_out else math.sqrt(2)
            nn.init.orthogonal_(m.weight, gain)
            nn.init.zeros_(m.bias)
    return net

