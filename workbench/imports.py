"""Teachers from other libraries: a Stable-Baselines3 zip, a cleanrl checkpoint, or any torch module.

An import reads the foreign network as a chain of layers (Nature-CNN convs, then fully connected layers, then the
action head), rebuilds it as a workbench :class:`~workbench.nets.Policy` with the same weights, and writes an
ordinary teacher run folder (``model.safetensors``, ``config.json``, ``card.json``) that every command and notebook
takes. The card records where the teacher came from and its return in the workbench beside the return its own
library gives on the same seeds (:func:`library_returns`).

Nothing in a file runs while it is read. An SB3 zip is a zip of JSON and torch files: ``data`` is read as JSON and
its ``:serialized:`` members (cloudpickles of spaces, schedules and classes) are never decoded; SB3 writes a
readable copy of each beside it, which is all an import needs (observation shape, number of actions, activation).
``policy.pth`` and a cleanrl ``.cleanrl_model`` are read with torch's weights-only loader, which rebuilds tensors
and refuses any other object: a file that needs real unpickling is refused with what and why
(:class:`ForeignModelError`), never loaded.

Which actions mean what: the workbench's envs use each game's minimal action set, as SB3's and cleanrl's Atari envs
(``*NoFrameskip-v4``) do, and gymnasium's own classic-control envs; the number of actions is checked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import nn

from .config import OnDevice, check
from .nets import ACTIVATIONS, NetSpec, Policy

Origin = Literal["sb3", "cleanrl", "module"]
CleanrlArch = Literal["dqn", "dqn_atari", "ppo", "ppo_atari"]
Conventions = Literal["auto", "ale-py", "sb3", "cleanrl"]
NATURE_KERNELS = (8, 4, 3)  # the Nature CNN's kernels (strides 4, 2, 1): SB3's NatureCNN and cleanrl's Atari nets


class ForeignModelError(ValueError):
    """A foreign model the workbench will not or cannot import, with what and why and what to do instead."""


@dataclass
class Foreign:
    """A foreign network read as layers: what a workbench Policy is rebuilt from."""

    kind: str
    """'q' (Q-values) or 'pi' (policy logits)."""
    obs_shape: tuple[int, ...]
    """The observations it reads, channels first."""
    convs: list[tuple[torch.Tensor, torch.Tensor]]
    """(weight, bias) of the Nature-CNN conv layers (none for an MLP)."""
    linears: list[tuple[torch.Tensor, torch.Tensor]]
    """(weight, bias) of the fully connected layers, the action head last."""
    activation: str = "relu"
    """After each fully connected hidden layer (convs and a CNN's hidden layer are always ReLU)."""
    obs_scale: float = 1.0
    """Observations are divided by this first (255 for uint8 frames)."""
    origin: dict = field(default_factory=dict)
    """Library, algorithm, version, file and its sha256: where it came from, for the card."""

    @property
    def n_actions(self) -> int:
        return int(self.linears[-1][0].shape[0])

    def spec(self) -> NetSpec:
        hidden = tuple(int(w.shape[0]) for w, _ in self.linears[:-1])
        if self.convs:
            if self.activation != "relu" and len(hidden) > 1:
                raise ForeignModelError(
                    f"a CNN whose fully connected layers after the first use {self.activation}: the workbench's "
                    "Nature CNN has ReLU throughout; import a CNN policy with the default net_arch, or an MLP")
            return NetSpec("nature_cnn", self.obs_shape, self.n_actions, tuple(int(w.shape[0]) for w, _ in self.convs),
                           hidden, self.obs_scale)
        return NetSpec("mlp", self.obs_shape, self.n_actions, (), hidden, self.obs_scale, activation=self.activation)

    def policy(self) -> Policy:
        """The workbench Policy with these weights (each layer's shape checked)."""
        policy = Policy(self.spec(), self.kind)
        mine = [m for m in policy.trunk if isinstance(m, (nn.Conv2d, nn.Linear))] + [policy.head]
        theirs = self.convs + self.linears
        if len(mine) != len(theirs):
            raise ForeignModelError(f"{len(theirs)} layers read, the rebuilt network has {len(mine)}")
        with torch.no_grad():
            for module, (w, b) in zip(mine, theirs):
                if module.weight.shape != w.shape or module.bias.shape != b.shape:
                    raise ForeignModelError(f"layer {module} does not fit weights of shape {tuple(w.shape)}: the "
                                            "observation shape or the layer order is not what the file holds")
                module.weight.copy_(w)
                module.bias.copy_(b)
        return policy.eval()


# -- reading files without running them ---------------------------------------------------------------------------
def load_tensors(data: bytes, where: str) -> dict[str, torch.Tensor]:
    """A torch-saved state dict, read with torch's weights-only loader: tensors and plain containers only. Anything
    else would need unpickling, which can run any code; it is refused by name."""
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError or others by version
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ForeignModelError(
            f"{where} holds pickled Python objects, not only tensors ({first[:300]}). The workbench reads weights with "
            "torch's weights-only loader and never unpickles anything else: unpickling a file can run any code in it. "
            "Save the network's state dict alone (torch.save(net.state_dict(), PATH)) and import that file.") from None
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise ForeignModelError(f"{where} is not a state dict (a mapping of names to tensors); it holds "
                                f"{type(obj).__name__}. Save net.state_dict() with torch.save and import that")
    return {str(k): v.float() if v.is_floating_point() else v for k, v in obj.items()}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _readable(item, name: str):
    """A member of an SB3 ``data`` item: the value itself where SB3 stored it as JSON, else the readable copy SB3
    wrote beside the (never decoded) cloudpickle, parsed as JSON where it is JSON, else the string."""
    if not isinstance(item, dict):
        return None
    value = item.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _class_name(text) -> str | None:
    """"<class 'torch.nn.modules.activation.ReLU'>" -> 'ReLU'."""
    m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)'?>?\s*$", str(text)) if text else None
    return m.group(1) if m else None


def _layer_chain(sd: dict, prefix: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (weight, bias) pairs under ``prefix`` + index, in index order (a Sequential's layers)."""
    idx = sorted({int(m.group(1)) for k in sd for m in [re.fullmatch(re.escape(prefix) + r"(\d+)\.weight", k)] if m})
    return [(sd[f"{prefix}{i}.weight"], sd[f"{prefix}{i}.bias"]) for i in idx]


def _nature(sd: dict, prefix: str, where: str) -> tuple[list, list]:
    """(convs, [linear]) of an SB3 NatureCNN extractor under ``prefix`` (``cnn.0/2/4``, ``linear.0``)."""
    convs = _layer_chain(sd, prefix + "cnn.")
    kernels = tuple(int(w.shape[-1]) for w, _ in convs)
    if kernels != NATURE_KERNELS:
        raise ForeignModelError(f"{where}: a CNN with kernels {kernels}; the workbench imports the Nature CNN "
                                f"(kernels {NATURE_KERNELS}, SB3's NatureCNN, the CnnPolicy default) only")
    return convs, _layer_chain(sd, prefix + "linear.")


def read_sb3(path: str | Path) -> Foreign:
    """A Stable-Baselines3 PPO, A2C or DQN model (``model.save(...)`` zip) with discrete actions, MLP or CNN policy."""
    path = Path(path)
    if not path.is_file():
        raise ForeignModelError(f"{path}: no such file (give the .zip that model.save wrote)")
    if (path.parent / "vecnormalize.pkl").exists():
        raise ForeignModelError(
            f"{path} was trained on normalised observations (vecnormalize.pkl beside it): their running statistics "
            "are a pickle, which the workbench does not read, and without them the policy sees other numbers than "
            "it was trained on. Import a model trained without VecNormalize")
    try:
        z = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ForeignModelError(f"{path} is not a zip file: give the .zip that an SB3 model.save() wrote") from None
    names = set(z.namelist())
    missing = {"data", "policy.pth"} - names
    if missing:
        raise ForeignModelError(f"{path} is a zip but not a Stable-Baselines3 model: it lacks {sorted(missing)} "
                                f"(it holds {sorted(names)[:8]})")
    data = json.loads(z.read("data"))
    version = z.read("_stable_baselines3_version").decode().strip() if "_stable_baselines3_version" in names else None
    sd = load_tensors(z.read("policy.pth"), f"{path}:policy.pth")
    obs_type, act_type = (str(data.get(k, {}).get(":type:", "")) for k in ("observation_space", "action_space"))
    if "Discrete" not in act_type or "MultiDiscrete" in act_type:
        raise ForeignModelError(f"{path} acts in {act_type or 'an unknown action space'}: the workbench distils "
                                "policies with discrete actions (Discrete) only")
    if "Box" not in obs_type:
        raise ForeignModelError(f"{path} observes {obs_type or 'an unknown space'}: the workbench imports "
                                "policies on array observations (Box) only")
    shape = tuple(int(x) for x in _readable(data["observation_space"], "_shape"))
    kwargs = data.get("policy_kwargs", {})
    extractor = _class_name(_readable(kwargs, "features_extractor_class"))
    if extractor not in (None, "NatureCNN", "FlattenExtractor"):
        raise ForeignModelError(f"{path} uses a custom features extractor ({extractor}): the workbench imports "
                                "SB3's FlattenExtractor (MlpPolicy) and NatureCNN (CnnPolicy)")
    normalize = _readable(kwargs, "normalize_images")
    if any(k.startswith("log_std") or "sde" in k for k in sd):
        raise ForeignModelError(f"{path} is a continuous-action policy: the workbench distils discrete actions only")

    if any(k.startswith("q_net.") for k in sd):  # DQN: q_net.features_extractor + q_net.q_net (q_net_target: unused)
        kind, algo, default_act = "q", "dqn", "relu"
        extractor_prefix, chain = "q_net.features_extractor.", _layer_chain(sd, "q_net.q_net.")
    elif "action_net.weight" in sd:  # PPO / A2C: features extractor, mlp_extractor.policy_net, action_net
        kind, default_act = "pi", "tanh"
        algo = "ppo" if "clip_range" in data else "a2c"
        shared = any(k.startswith("features_extractor.") for k in sd)
        extractor_prefix = "features_extractor." if shared else "pi_features_extractor."
        chain = _layer_chain(sd, "mlp_extractor.policy_net.") + [(sd["action_net.weight"], sd["action_net.bias"])]
    else:
        raise ForeignModelError(f"{path}: policy.pth holds neither a DQN q_net nor an actor-critic action_net "
                                f"(keys: {sorted(sd)[:6]}...): the workbench imports SB3's PPO, A2C and DQN")
    act_name = _class_name(_readable(kwargs, "activation_fn"))
    activation = act_name.lower() if act_name else default_act
    if activation not in ACTIVATIONS:
        raise ForeignModelError(f"{path} uses the activation {act_name}; the workbench's networks use "
                                f"{' or '.join(ACTIVATIONS)}")
    convs: list = []
    if any(k.startswith(extractor_prefix + "cnn.") for k in sd):
        convs, linear = _nature(sd, extractor_prefix, str(path))
        chain = linear + chain
        scale = 255.0 if normalize in (None, True) else 1.0
        if len(chain) > 2 and activation != "relu":
            raise ForeignModelError(f"{path}: a CNN policy with a {activation} net_arch after its features; the "
                                    "workbench's Nature CNN is ReLU throughout (SB3's CnnPolicy default has no net_arch)")
        activation = "relu"
    else:
        scale = 1.0
    origin = {"library": "stable-baselines3", "library_version": version, "algo": algo,
              "policy": "CnnPolicy" if convs else "MlpPolicy", "file": str(path), "sha256": sha256(path),
              "activation": activation}
    return Foreign(kind, shape, convs, chain, activation, scale, origin)


# cleanrl's networks, by script: the state-dict keys of the acting path (cleanrl saves torch.save(net.state_dict())).
CLEANRL = {
    # dqn.py QNetwork: network = Linear(obs, 120), ReLU, Linear(120, 84), ReLU, Linear(84, n)
    "dqn": dict(kind="q", convs=(), linears=("network.0", "network.2", "network.4"), activation="relu", scale=1.0),
    # dqn_atari.py QNetwork: Nature CNN in network.0/2/4, Flatten, Linear 512 (network.7), head (network.9); x / 255
    "dqn_atari": dict(kind="q", convs=("network.0", "network.2", "network.4"), linears=("network.7", "network.9"),
                      activation="relu", scale=255.0),
    # ppo.py Agent: actor = Linear(obs, 64), Tanh, Linear(64, 64), Tanh, Linear(64, n) (the critic is not needed)
    "ppo": dict(kind="pi", convs=(), linears=("actor.0", "actor.2", "actor.4"), activation="tanh", scale=1.0),
    # ppo_atari.py Agent: network = Nature CNN + Linear 512 (network.7), actor = Linear(512, n); x / 255
    "ppo_atari": dict(kind="pi", convs=("network.0", "network.2", "network.4"), linears=("network.7", "actor"),
                      activation="relu", scale=255.0),
}


def read_cleanrl(path: str | Path, arch: str) -> Foreign:
    """A cleanrl checkpoint (``.cleanrl_model``: the state dict of the script's network) of ``arch``."""
    path = Path(path)
    if arch not in CLEANRL:
        raise ForeignModelError(f"unknown cleanrl arch {arch!r}: choose one of {sorted(CLEANRL)} (the script that "
                                "trained it)")
    if not path.is_file():
        raise ForeignModelError(f"{path}: no such file (give the .cleanrl_model that the script saved)")
    sd = load_tensors(path.read_bytes(), str(path))
    a = CLEANRL[arch]
    need = [f"{name}.{p}" for name in a["convs"] + a["linears"] for p in ("weight", "bias")]
    missing = [k for k in need if k not in sd]
    # The critic is not needed to act; any other key, or a layer of the wrong kind, says it is another script's net.
    extra = sorted(k for k in sd if k not in need and not k.startswith("critic."))
    wrong = [k for k in need if k in sd and k.endswith(".weight")
             and sd[k].dim() != (4 if k.rsplit(".", 1)[0] in a["convs"] else 2)]
    if missing or extra or wrong:
        what = (f"lacks {missing[:4]}" if missing else f"has {extra[:4]} besides it" if extra else
                f"has {wrong[0]} of shape {tuple(sd[wrong[0]].shape)}")
        raise ForeignModelError(f"{path} is not cleanrl's {arch} network: it {what} (its keys: {sorted(sd)[:8]}); "
                                "give the --arch of the script that saved it")
    convs = [(sd[f"{n}.weight"], sd[f"{n}.bias"]) for n in a["convs"]]
    linears = [(sd[f"{n}.weight"], sd[f"{n}.bias"]) for n in a["linears"]]
    if convs:
        shape = (int(convs[0][0].shape[1]), 84, 84)
    else:
        shape = (int(linears[0][0].shape[1]),)
    origin = {"library": "cleanrl", "algo": arch, "file": str(path), "sha256": sha256(path),
              "activation": a["activation"]}
    return Foreign(a["kind"], shape, convs, linears, a["activation"], a["scale"], origin)


def read_module(module: nn.Module, kind: str, obs_shape, obs_scale: float = 1.0) -> Foreign:
    """Any torch module that maps observations to logits or Q-values, if its layers are a chain the workbench can
    hold: Nature-CNN convs (kernels 8, 4, 3), then Linear layers, with ReLU or Tanh between (``nn.Sequential``, or
    modules registered in the order they run). :func:`import_teacher` checks the rebuilt network against the module
    on the env's own observations, so a module whose ``forward`` does more than its layers say is refused there."""
    if kind not in ("q", "pi"):
        raise ForeignModelError(f"kind must be 'q' (Q-values) or 'pi' (policy logits), got {kind!r}")
    leaves = [m for m in module.modules() if not list(m.children())]
    convs, linears, acts = [], [], set()
    for m in leaves:
        if isinstance(m, nn.Conv2d):
            if linears:
                raise ForeignModelError("a conv layer after a linear one: not a chain the workbench can hold")
            convs.append((m.weight.detach().float().cpu(), m.bias.detach().float().cpu()))
        elif isinstance(m, nn.Linear):
            linears.append((m.weight.detach().float().cpu(), m.bias.detach().float().cpu()))
        elif isinstance(m, (nn.ReLU, nn.Tanh)):
            if linears:  # the activations between fully connected layers (a CNN's convs are ReLU'd anyway)
                acts.add(type(m).__name__.lower())
        elif not isinstance(m, (nn.Flatten, nn.Identity, nn.Dropout)):
            raise ForeignModelError(f"the module holds a {type(m).__name__}: the workbench holds chains of Conv2d "
                                    "(Nature CNN), Linear, ReLU, Tanh and Flatten")
    if not linears:
        raise ForeignModelError("the module has no Linear layer: nothing maps its features to actions")
    if convs and tuple(int(w.shape[-1]) for w, _ in convs) != NATURE_KERNELS:
        raise ForeignModelError(f"conv kernels {tuple(int(w.shape[-1]) for w, _ in convs)}: the workbench holds the "
                                f"Nature CNN's {NATURE_KERNELS}")
    if len(acts) > 1:
        raise ForeignModelError(f"the module mixes {sorted(acts)} between its linear layers; the workbench uses one")
    activation = acts.pop() if acts and not convs else "relu"
    return Foreign(kind, tuple(int(x) for x in obs_shape), convs, linears, activation, float(obs_scale),
                   {"library": "torch", "algo": type(module).__name__})


# -- the import ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportConfig(OnDevice):
    FLAGS: ClassVar[dict] = {"origin": "from", "env_id": "env", "eval_episodes": "episodes"}

    origin: Origin = "sb3"
    """Where the teacher comes from: sb3 (a Stable-Baselines3 .zip), cleanrl (a .cleanrl_model state dict), or
    module (a torch module handed over in Python)."""
    path: str = ""
    """The model file (sb3, cleanrl)."""
    env_id: str = "CartPole-v1"
    """The workbench env it plays (e.g. ALE/Breakout-v5 for an SB3 model trained on BreakoutNoFrameskip-v4)."""
    arch: CleanrlArch | None = None
    """cleanrl only: the script whose network the checkpoint holds (dqn, dqn_atari, ppo, ppo_atari)."""
    eval_episodes: int = 30
    """Episodes of the teacher's evaluation, in the workbench and in its own library (greedy, fixed seeds)."""
    eval_seed: int = 10_000
    """Env seed of the first evaluation episode (the workbench's cards use 10000)."""
    library_return: bool = True
    """Also play the same seeds with the teacher's own library (needs stable-baselines3) and record both."""
    conventions: Conventions = "auto"
    """Atari only: whose wrappers make the frames the teacher sees, and every student after it. auto: its own
    library's (sb3 or cleanrl: their no-op and FIRE start, and the reset after a lost life that they train and
    evaluate with; workbench/library_atari.py), ale-py's vector env for a torch module."""
    env_settings: dict = field(default_factory=dict)
    """Overrides of the env family's behaviour settings (recorded in the run)."""

    def env_overrides(self, family: str) -> dict:
        """The env settings of the import: ``env_settings`` with the Atari conventions it resolves to."""
        if family != "ale":
            return dict(self.env_settings)
        conventions = self.conventions
        if conventions == "auto":
            conventions = self.origin if self.origin in ("sb3", "cleanrl") else "ale-py"
        return {"conventions": conventions, **self.env_settings}

    def __post_init__(self):
        check(self, positive=("eval_episodes",), non_negative=("eval_seed",))
        if self.origin == "cleanrl" and self.arch is None:
            from .config import ConfigError

            raise ConfigError("--from cleanrl needs --arch: the cleanrl script that saved the checkpoint "
                              "(dqn, dqn_atari, ppo or ppo_atari)")


def read_foreign(config: ImportConfig) -> Foreign:
    if config.origin == "sb3":
        return read_sb3(config.path)
    if config.origin == "cleanrl":
        return read_cleanrl(config.path, config.arch)
    raise ForeignModelError("origin 'module' takes a torch module: call import_module(module, kind, env_id, out)")


def _check_fits(foreign: Foreign, spec, what: str) -> None:
    if tuple(foreign.obs_shape) != tuple(spec.obs_shape) or foreign.n_actions != spec.n_actions:
        raise ForeignModelError(
            f"{what} reads observations {tuple(foreign.obs_shape)} and has {foreign.n_actions} actions; "
            f"{spec.env_id} in the workbench gives {tuple(spec.obs_shape)} and {spec.n_actions} actions "
            f"({', '.join(spec.action_meanings)}). Give the --env it was trained on (an SB3/cleanrl Atari model "
            "trained on BreakoutNoFrameskip-v4 plays ALE/Breakout-v5 here)")


@torch.no_grad()
def env_observations(spec, n: int = 256, seed: int = 12_345) -> np.ndarray:
    """n observations from random play in the workbench env: what a rebuilt network is checked on."""
    from .envs import make_env

    envs, _ = make_env(spec.env_id, 4, seed, **spec.settings)
    obs, _ = envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    while sum(len(o) for o in out) < n:
        out.append(np.array(obs, copy=True))
        obs, *_ = envs.step(rng.integers(0, spec.n_actions, len(obs)))
    envs.close()
    return np.concatenate(out)[:n]


def import_teacher(config: ImportConfig, out: str | Path, module: nn.Module | None = None,
                   kind: str | None = None) -> dict:
    """Import a foreign teacher into the run folder ``out``; returns its card. ``module`` and ``kind`` are for
    ``origin='module'`` (use :func:`import_module`)."""
    from .agents.common import check_out, open_run
    from .envs import make_env
    from .evaluate import evaluate
    from .hardware import place, resolve_device
    from .runs import save_policy

    t0 = time.perf_counter()
    device = resolve_device(config.device)
    from .envs import family_of

    envs, spec = make_env(config.env_id, 1, 0, **config.env_overrides(family_of(config.env_id)))
    envs.close()
    if config.origin == "module":
        if module is None or kind is None:
            raise ForeignModelError("origin 'module' needs the module and its kind ('q' or 'pi')")
        foreign = None
        for scale in ((255.0, 1.0) if len(spec.obs_shape) == 3 else (1.0,)):
            candidate = read_module(module, kind, spec.obs_shape, scale)
            if _agrees(candidate.policy(), module, spec) is None:
                foreign = candidate
                break
        if foreign is None:
            gap = _agrees(read_module(module, kind, spec.obs_shape).policy(), module, spec)
            raise ForeignModelError(
                f"the network rebuilt from the module's layers does not give the module's outputs on {spec.env_id}'s "
                f"observations ({gap}): its forward does more than a chain of its layers (a skip connection, a "
                "scaling, a second head?). Hand over the submodule that maps observations to logits or Q-values")
        foreign.origin = {"library": "torch", "algo": type(module).__name__, "file": None}
    else:
        foreign = read_foreign(config)
    _check_fits(foreign, spec, config.path or "the module")
    policy = foreign.policy()
    if Path(out).exists() and any(Path(out).iterdir()):
        raise FileExistsError(f"{out} is not empty: an import writes a new teacher run folder; choose another --out "
                              "(or delete the folder)")
    check_out(out, resume=False)  # every check above ran before anything is written
    where = place(device, None, policy)
    run = open_run(out, config, spec, False, **where)
    returns = evaluate(policy, spec.env_id, config.eval_episodes, config.eval_seed, spec.settings)
    library = None
    if config.library_return and config.origin in ("sb3", "cleanrl"):
        library = library_returns(foreign, spec, config.eval_episodes, config.eval_seed)
    save_policy(run.file("model.safetensors"), policy.cpu(), env_id=spec.env_id, algo=foreign.origin.get("algo"),
                origin=foreign.origin)
    card = {
        "env_id": spec.env_id, "algo": foreign.origin.get("algo"), "kind": foreign.kind, "params": policy.n_params,
        "net": dataclasses.asdict(foreign.spec()), "env_steps": None, "wall_seconds": round(time.perf_counter() - t0, 1),
        "eval_seed": config.eval_seed, **returns.summary("return"), "returns": returns.returns.tolist(),
        "env_settings": spec.settings, "action_meanings": list(spec.action_meanings),
        "source": f"import-teacher --from {config.origin}", "origin": foreign.origin,
        "library_return": library, **where, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if library and library.get("returns"):
        card["library_return_difference"] = round(float(returns.mean) - float(np.mean(library["returns"])), 4)
    run.write_card(card)
    return card


def import_module(module: nn.Module, kind: str, env_id: str, out: str | Path, **config) -> dict:
    """Any torch module that maps observations (channels first, as the workbench env gives them) to policy logits
    (``kind='pi'``) or Q-values (``kind='q'``) as a teacher run folder; returns its card. Checked on the env's own
    observations: the rebuilt network must give the module's outputs (within float rounding)."""
    return import_teacher(ImportConfig(origin="module", env_id=env_id, **config), out, module=module, kind=kind)


@torch.no_grad()
def _agrees(policy: Policy, module: nn.Module, spec) -> str | None:
    """None where ``policy`` gives ``module``'s outputs on the env's observations, else how far apart they are."""
    obs = env_observations(spec, 128)
    module.eval()
    ref = module(torch.as_tensor(obs).float())
    if not torch.is_tensor(ref) or ref.shape != (len(obs), spec.n_actions):
        return f"the module returns {getattr(ref, 'shape', type(ref).__name__)}, not [batch, {spec.n_actions}]"
    got = policy.logits(obs)
    gap = float((got - ref).abs().max())
    return None if gap <= 1e-4 * max(1.0, float(ref.abs().max())) else f"largest difference {gap:.3g}"


# -- the teacher's own library on the same seeds ------------------------------------------------------------------
def library_returns(foreign: Foreign, spec, episodes: int, seed: int) -> dict:
    """The teacher's greedy returns on episodes ``seed .. seed + episodes - 1`` as its own library plays them: for
    SB3 its policy class (built from the same weights, never from the pickles) predicting on gymnasium's env, on
    Atari in SB3's ``make_atari_env`` with a 4-frame ``VecFrameStack``, as RL Zoo evaluates; for cleanrl its network
    on gymnasium's env, on Atari in the wrappers of cleanrl's Atari scripts. Atari returns are whole games, as those
    libraries' episode statistics count them. Returns {"returns", "mean", "how"} or {"returns": None, "why"} where it
    cannot be played here."""
    library = foreign.origin.get("library")
    if spec.family == "minatar":
        return {"returns": None, "why": "MinAtar models are not trained with SB3's or cleanrl's own envs"}
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        if spec.family == "ale" or library == "stable-baselines3":
            return {"returns": None, "why": "stable-baselines3 is not installed (pip install -e '.[sb3]')"}
    own = "sb3" if library == "stable-baselines3" else "cleanrl"
    rets, stalled = play_library_env(_library_actor(foreign), spec, episodes, seed, own)
    how = ("SB3 policy.predict(deterministic=True)" if library == "stable-baselines3" else "cleanrl network argmax")
    why = None
    conventions = spec.settings.get("conventions", "ale-py")
    if spec.family == "ale" and conventions != own:
        why = (f"the workbench played it under conventions={conventions!r}, its library under its own ({own!r}): "
               "the same frame processing, but another start of each game (ale-py presses FIRE for one frame, "
               "SB3's and cleanrl's wrappers for one step and then action 2, and reset the same way after a lost "
               "life) and no-op starts from other generators (docs/lab-notes/bring-your-own-teacher.md)")
    return {"returns": rets, "mean": float(np.mean(rets)), "std": float(np.std(rets)), "n": episodes, "stalled": stalled,
            **({"differs_because": why} if why else {}),
            "how": how + (f" on {_v4_id(spec.env_id)} with {own}'s Atari wrappers" if spec.family == "ale" else
                          f" on gymnasium's {spec.env_id}")}


def play_library_env(act, spec, episodes: int, seed: int, library: str = "sb3") -> tuple[list[float], int]:
    """(returns, episodes stalled) of ``act`` (observation -> action) on episodes ``seed .. seed + episodes - 1`` of
    the env as ``library`` (sb3 or cleanrl) builds it (:func:`library_env`); a greedy episode stuck on one frame for
    ``evaluate.STALL_STEPS`` steps ends there, as in the workbench's evaluation."""
    from .evaluate import STALL_STEPS

    make = library_env(spec, library)
    rets, stalled = [], 0
    for i in range(episodes):
        env, obs = make(seed + i)
        total, done, same_for = 0.0, False, 0
        while not done:
            before = obs
            obs, reward, term, trunc, _ = env.step(act(obs))
            total += float(reward)
            done = term or trunc
            same_for = same_for + 1 if np.array_equal(obs, before) else 0
            if same_for >= STALL_STEPS and not done:
                stalled, done = stalled + 1, True
        env.close()
        rets.append(total)
    return rets, stalled


def _v4_id(env_id: str) -> str:
    return env_id.split("/")[-1].split("-v")[0] + "NoFrameskip-v4"


def _library_actor(foreign: Foreign):
    """obs (the library's own layout) -> action, by the library's own code where there is one."""
    if foreign.origin.get("library") == "stable-baselines3":
        policy = sb3_policy(foreign)

        def act(obs):
            return int(policy.predict(obs, deterministic=True)[0])
        return act
    net = cleanrl_network(foreign)

    @torch.no_grad()
    def act(obs):
        x = torch.as_tensor(np.asarray(obs), dtype=torch.float32)[None]
        return int(net(x).argmax(-1))
    return act


def sb3_policy(foreign: Foreign):
    """SB3's own policy object for these weights: its class built from the layer sizes read, then the weights loaded
    strictly (a key the import misread fails here)."""
    import gymnasium as gym
    from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy
    from stable_baselines3.dqn.policies import CnnPolicy, DQNPolicy

    sd = load_tensors(zipfile.ZipFile(foreign.origin["file"]).read("policy.pth"), foreign.origin["file"])
    cnn = bool(foreign.convs)
    obs_space = (gym.spaces.Box(0, 255, foreign.obs_shape, np.uint8) if cnn else
                 gym.spaces.Box(-np.inf, np.inf, foreign.obs_shape, np.float32))
    act_space = gym.spaces.Discrete(foreign.n_actions)
    hidden = [int(w.shape[0]) for w, _ in foreign.linears[(1 if cnn else 0):-1]]
    kw = dict(activation_fn=ACTIVATIONS[foreign.activation] if not cnn else nn.ReLU)
    if foreign.kind == "q":
        cls = CnnPolicy if cnn else DQNPolicy
        policy = cls(obs_space, act_space, lambda _: 0.0, net_arch=hidden, **kw)
    else:
        cls = ActorCriticCnnPolicy if cnn else ActorCriticPolicy
        vf = [int(sd[k].shape[0]) for k in sorted(sd) if re.fullmatch(r"mlp_extractor\.value_net\.\d+\.weight", k)]
        share = any(k.startswith("features_extractor.") for k in sd)
        policy = cls(obs_space, act_space, lambda _: 0.0, net_arch=dict(pi=hidden, vf=vf),
                     share_features_extractor=share, **kw)
    policy.load_state_dict(sd, strict=True)
    return policy.eval()


def cleanrl_network(foreign: Foreign) -> nn.Module:
    """cleanrl's network for the script the checkpoint came from, as its script defines it (the acting path)."""
    arch = foreign.origin["algo"]
    sd = load_tensors(Path(foreign.origin["file"]).read_bytes(), foreign.origin["file"])
    n_obs = foreign.obs_shape[0]
    n = foreign.n_actions
    if arch == "dqn":
        net = nn.Sequential(nn.Linear(n_obs, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, n))
        net.load_state_dict({k.removeprefix("network."): v for k, v in sd.items()})
        return net
    if arch == "ppo":
        net = nn.Sequential(nn.Linear(n_obs, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, n))
        net.load_state_dict({k.removeprefix("actor."): v for k, v in sd.items() if k.startswith("actor.")})
        return net
    trunk = nn.Sequential(nn.Conv2d(n_obs, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
                          nn.Conv2d(64, 64, 3, 1), nn.ReLU(), nn.Flatten(), nn.Linear(3136, 512), nn.ReLU())
    head = nn.Linear(512, n)
    if arch == "dqn_atari":
        trunk.append(head)
        trunk.load_state_dict({k.removeprefix("network."): v for k, v in sd.items()})
        return nn.Sequential(_Scale(255.0), trunk)
    trunk.load_state_dict({k.removeprefix("network."): v for k, v in sd.items() if k.startswith("network.")})
    head.load_state_dict({k.removeprefix("actor."): v for k, v in sd.items() if k.startswith("actor.")})
    return nn.Sequential(_Scale(255.0), trunk, head)


class _Scale(nn.Module):
    def __init__(self, by: float):
        super().__init__()
        self.by = by

    def forward(self, x):
        return x / self.by


def library_env(spec, library: str = "sb3"):
    """seed -> (env, first observation): the env ``spec`` names as ``library`` builds it, one whole game an
    episode, raw rewards, observations channels first. gymnasium's own env for classic control. For Atari
    ``*NoFrameskip-v4``: ``sb3`` is SB3's ``make_atari_env`` (``AtariWrapper`` with its defaults: the learner's
    episode ends at a lost life and its reset presses FIRE) with ``VecFrameStack(4)``, counted by its ``Monitor``;
    ``cleanrl`` is the wrapper chain of cleanrl's ``ppo_atari.py``/``dqn_atari.py`` (SB3's wrappers, then resize,
    gray and a 4-frame stack), counted by ``RecordEpisodeStatistics``."""
    import gymnasium as gym

    if spec.family != "ale":
        def make(seed):
            env = gym.make(spec.env_id)
            obs, _ = env.reset(seed=seed)
            return env, obs
        return make
    import ale_py

    gym.register_envs(ale_py)
    if library not in ("sb3", "cleanrl"):
        raise ValueError(f"library must be 'sb3' or 'cleanrl', got {library!r}")

    def make(seed):
        env = _SB3Game(_v4_id(spec.env_id), seed) if library == "sb3" else _CleanrlGame(_v4_id(spec.env_id), seed)
        return env, env.first
    return make


class _SB3Game:
    """One whole game in SB3's ``make_atari_env`` + ``VecFrameStack(4)``: steps until its ``Monitor`` reports the
    episode, rewards the raw ones the ``Monitor`` counts (also those of the reset sequences after a lost life)."""

    def __init__(self, env_id: str, seed: int):
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.monitor import Monitor
        from stable_baselines3.common.vec_env import VecFrameStack

        self.venv = VecFrameStack(make_atari_env(env_id, n_envs=1, seed=seed), n_stack=4)
        env = self.venv.venv.envs[0]
        while not isinstance(env, Monitor):
            env = env.env
        self.monitor, self.counted = env, 0.0
        self.first = self.venv.reset()[0].transpose(2, 0, 1)

    def step(self, action):
        obs, _, _, infos = self.venv.step(np.array([action]))
        ep = infos[0].get("episode")
        total = float(ep["r"]) if ep else float(sum(self.monitor.rewards))
        reward, self.counted = total - self.counted, total
        return obs[0].transpose(2, 0, 1), reward, ep is not None, False, infos[0]

    def close(self):
        self.venv.close()


def cleanrl_atari_env(env_id: str):
    """One ``*NoFrameskip-v4`` game in the wrappers of cleanrl's Atari scripts: ``RecordEpisodeStatistics``, SB3's
    ``NoopResetEnv(30)``, ``MaxAndSkipEnv(4)``, ``EpisodicLifeEnv``, ``FireResetEnv``, ``ClipRewardEnv``, then a
    resize to 84x84 (``cv2.INTER_AREA``), OpenCV's gray and a 4-frame stack that starts from copies of the first
    frame. Returns (the stack, its ``RecordEpisodeStatistics``); not reset."""
    import ale_py
    import cv2
    import gymnasium as gym
    from stable_baselines3.common.atari_wrappers import (ClipRewardEnv, EpisodicLifeEnv, FireResetEnv,
                                                         MaxAndSkipEnv, NoopResetEnv)

    gym.register_envs(ale_py)
    stats = gym.wrappers.RecordEpisodeStatistics(gym.make(env_id))
    env = MaxAndSkipEnv(NoopResetEnv(stats, noop_max=30), skip=4)
    env = EpisodicLifeEnv(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireResetEnv(env)
    env = gym.wrappers.ResizeObservation(ClipRewardEnv(env), (84, 84))
    env = gym.wrappers.TransformObservation(env, lambda o: cv2.cvtColor(o, cv2.COLOR_RGB2GRAY),
                                            gym.spaces.Box(0, 255, (84, 84), np.uint8))
    return gym.wrappers.FrameStackObservation(env, 4), stats


class _CleanrlGame:
    """One whole game in :func:`cleanrl_atari_env`, reset at every lost life, as cleanrl's vector env does, until
    the statistics report the game."""

    def __init__(self, env_id: str, seed: int):
        self.env, self.stats = cleanrl_atari_env(env_id)
        self.first = np.asarray(self.env.reset(seed=seed)[0])
        self.counted = 0.0

    def step(self, action):
        obs, _, term, trunc, info = self.env.step(action)
        ep = info.get("episode")
        total = float(ep["r"]) if ep else float(self.stats.episode_returns)
        reward, self.counted = total - self.counted, total
        if (term or trunc) and ep is None:  # a lost life: the learner's reset, the game goes on
            obs, _ = self.env.reset()
        return np.asarray(obs), reward, ep is not None, False, info

    def close(self):
        self.env.close()
