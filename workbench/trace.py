"""One rollout, both networks on every frame: the data behind the frame-by-frame views.

A :class:`Trace` records a single episode driven by the teacher or the student and evaluates *both* policies
on every observation: raw outputs (Q-values or logits), action probabilities, chosen actions, rewards, the
frame as the agent sees it and as a human sees it. Traces save to one safetensors file (arrays) whose
header carries the JSON metadata, so loading one never executes code.

Branch views and saliency need the emulator itself. :class:`SingleEnv` plays one env with snapshots:
ALE through ``cloneState``/``restoreState`` on an ``ALEInterface`` whose preprocessing reproduces ale-py's
native vector env frame for frame (tested), MinAtar and classic control by copying the env object.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .envs import EnvSpec, _ale_game, make_single_env
from .evaluate import check_fits
from .hardware import resolve_device
from .runs import CheckpointError, atomic_write_bytes
from .teachers import load

TRACE_FORMAT = "workbench-trace/1"
# Colours for MinAtar channels (one per object type), close to MinAtar's own cubehelix display.
_PALETTE = np.array([[228, 26, 28], [55, 126, 184], [77, 175, 74], [152, 78, 163], [255, 127, 0], [200, 200, 51],
                     [166, 86, 40], [247, 129, 191], [153, 153, 153], [0, 160, 160]], dtype=np.uint8)


def policy_probs(outputs: np.ndarray, kind: str, tau: float | None = None) -> np.ndarray:
    """Action probabilities from raw outputs: softmax(logits) for a policy, softmax(q / tau) for Q-values.

    For Q-values the default tau is Rusu's 0.01, the sharpened distribution a KL student is trained to match.
    """
    tau = tau if tau is not None else (0.01 if kind == "q" else 1.0)
    z = np.asarray(outputs, dtype=np.float64) / tau
    z -= z.max(-1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


class SingleEnv:
    """One environment with the workbench's observation convention, snapshots and a human-view screen."""

    def __init__(self, spec: EnvSpec, seed: int = 0):
        self.spec, self.family = spec, spec.family
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.lib = None  # SB3's or cleanrl's Atari wrappers (library_atari), where the spec's conventions say so
        if self.family == "ale" and "conventions" in spec.settings:
            from .library_atari import LibraryAtari

            self.lib = LibraryAtari(_ale_game(spec.env_id), spec.settings["conventions"], spec.settings)
            self.ale, self.stack = self.lib.ale, self.lib.stack
        elif self.family == "ale":
            self._init_ale(spec.settings, seed)
        else:
            self.env, _ = make_single_env(spec.env_id, **spec.settings)
            self._obs = None

    # --- ALE: an ALEInterface with the native vector env's preprocessing -------------------------------------
    def _init_ale(self, s: dict, seed: int) -> None:
        import ale_py

        self.s = s
        self.ale = ale_py.ALEInterface()
        self.ale.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale.setInt("random_seed", int(seed))
        self.ale.setFloat("repeat_action_probability", float(s["repeat_action_probability"]))
        self.ale.setInt("max_num_frames_per_episode", int(s["max_episode_frames"]))
        self.ale.loadROM(ale_py.roms.get_rom_path(_ale_game(self.spec.env_id)))
        self.actions = self.ale.getMinimalActionSet()
        self.stack = np.zeros((s["stack_num"], s["img_size"], s["img_size"]), np.uint8)

    def _ale_frame(self, prev: np.ndarray | None) -> np.ndarray:
        import cv2

        g = self.ale.getScreenGrayscale()
        if prev is not None and self.s["maxpool"]:
            g = np.maximum(prev, g)
        return cv2.resize(g, (self.s["img_size"], self.s["img_size"]), interpolation=cv2.INTER_AREA)

    def _push(self, frame: np.ndarray) -> np.ndarray:
        self.stack[:-1] = self.stack[1:]
        self.stack[-1] = frame
        return self.stack.copy()

    def reset(self) -> np.ndarray:
        if self.lib is not None:
            return self.lib.reset(seed=self.seed)[0]
        if self.family != "ale":
            self._obs, _ = self.env.reset(seed=self.seed)
            return self._obs
        self.ale.reset_game()
        for _ in range(int(self.rng.integers(0, self.s["noop_max"] + 1)) if self.s["noop_max"] else 0):
            self.ale.act(self.actions[0])
        meanings = self.spec.action_meanings
        if self.s["use_fire_reset"] and "FIRE" in meanings:
            self.ale.act(self.actions[meanings.index("FIRE")])  # one raw frame, as the native vector env does
        self.stack[:] = 0
        return self._push(self._ale_frame(None))

    def step(self, action: int) -> tuple[np.ndarray, float, bool]:
        """(obs, reward, done) for one agent step."""
        if self.lib is not None:
            obs, r, term, trunc, _ = self.lib.step(int(action))
            return obs, float(r), bool(term or trunc)
        if self.family != "ale":
            self._obs, r, term, trunc, _ = self.env.step(int(action))
            return self._obs, float(r), bool(term or trunc)
        reward, prev, a = 0.0, None, self.actions[int(action)]
        for k in range(self.s["frameskip"]):
            if k == self.s["frameskip"] - 1:
                prev = self.ale.getScreenGrayscale()
            reward += self.ale.act(a)
            if self.ale.game_over():
                break
        obs = self._push(self._ale_frame(prev))
        return obs, reward, bool(self.ale.game_over())

    def snapshot(self):
        if self.lib is not None:
            return self.ale.cloneState(), self.stack.copy(), self._lib_state()
        if self.family == "ale":
            return self.ale.cloneState(), self.stack.copy()
        return copy.deepcopy(self.env), copy.deepcopy(self._obs)

    def restore(self, snap) -> None:
        if self.lib is not None:
            self.ale.restoreState(snap[0])
            self.stack[:] = snap[1]
            self._set_lib_state(snap[2])
        elif self.family == "ale":
            self.ale.restoreState(snap[0])
            self.stack[:] = snap[1]
        else:
            self.env, self._obs = copy.deepcopy(snap[0]), copy.deepcopy(snap[1])

    def state_bytes(self) -> bytes:
        """The emulator's state now, as bytes that restore it without executing code: ALE's own serialised state
        (``cloneState().serialize()``) beside the frame stack; MinAtar's and classic control's as JSON of the env's
        attributes (its game's numbers and lists, its random generators' states, the time limit's step count)."""
        if self.lib is not None:
            head = json.dumps({"stack": list(self.stack.shape), "wrappers": self._lib_state()[:2],
                               "buffer": list(self.lib._buffer.shape)}).encode()
            return b"LIB1" + len(head).to_bytes(4, "little") + head + self.stack.tobytes() + \
                self.lib._buffer.tobytes() + bytes(self.ale.cloneState().serialize())
        if self.family == "ale":
            head = json.dumps({"stack": list(self.stack.shape)}).encode()
            return b"ALE1" + len(head).to_bytes(4, "little") + head + self.stack.tobytes() + bytes(
                self.ale.cloneState().serialize())
        return b"ENV1" + json.dumps({"env": _attrs_of(self.env), "obs": _encode(self._obs)}).encode()

    def load_state_bytes(self, data: bytes) -> np.ndarray:
        """Restore a state ``state_bytes`` wrote (for this env id); returns the observation at it."""
        import ale_py

        kind = bytes(data[:4])
        if self.lib is not None and kind == b"LIB1":
            n = int.from_bytes(data[4:8], "little")
            head = json.loads(bytes(data[8:8 + n]))
            at = 8 + n
            for arr, shape in ((self.stack, head["stack"]), (self.lib._buffer, head["buffer"])):
                size = int(np.prod(shape))
                arr[:] = np.frombuffer(bytes(data[at:at + size]), np.uint8).reshape(shape)
                at += size
            self._set_lib_state((*head["wrappers"], self.lib._buffer))
            self.ale.restoreState(ale_py.ALEState(bytes(data[at:])))
            return self.stack.copy()
        if self.lib is None and self.family == "ale" and kind == b"ALE1":
            n = int.from_bytes(data[4:8], "little")
            shape = tuple(json.loads(bytes(data[8:8 + n]))["stack"])
            size = int(np.prod(shape))
            self.stack[:] = np.frombuffer(bytes(data[8 + n:8 + n + size]), np.uint8).reshape(shape)
            self.ale.restoreState(ale_py.ALEState(bytes(data[8 + n + size:])))
            return self.stack.copy()
        if self.family != "ale" and kind == b"ENV1":
            state = json.loads(bytes(data[4:]))
            _set_attrs(self.env, state["env"])
            self._obs = _decode(state["obs"])
            return self._obs
        raise ValueError(f"these bytes are not a saved {self.family} state (they start {kind!r}); save one with "
                         "SingleEnv.state_bytes on the same env id")

    def _lib_state(self) -> tuple:
        """What SB3's wrappers remember between steps besides the emulator and the stack: the lives last seen, whether
        the game really ended, and the max-pool buffer."""
        return int(self.lib.lives), bool(self.lib.real_done), self.lib._buffer.copy()

    def _set_lib_state(self, state: tuple) -> None:
        self.lib.lives, self.lib.real_done = int(state[0]), bool(state[1])
        self.lib._buffer[:] = state[2]

    def screen(self, obs: np.ndarray) -> np.ndarray:
        """What a human sees: the RGB screen (ALE), a coloured board (MinAtar), the state values (classic)."""
        if self.family == "ale":
            return self.ale.getScreenRGB()
        return agent_view(obs, self.family, scale=16 if self.family == "minatar" else 1)


# -- an env's state as JSON: the simple attributes of the wrappers and the game objects under them -------------------
_SKIP = {"spec", "_cached_spec", "_saved_kwargs", "_previous_data", "action_space", "observation_space",
         "_action_space", "_observation_space", "_metadata", "metadata", "render_mode", "screen", "clock"}


def _is_state_object(v) -> bool:
    import gymnasium as gym

    return isinstance(v, gym.Env) or type(v).__module__.split(".")[0] == "minatar"


def _encode(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, np.generic):
        return {"__np__": v.dtype.str, "v": v.item()}
    if isinstance(v, np.ndarray):
        return {"__nd__": v.dtype.str, "shape": list(v.shape), "v": v.ravel().tolist()}
    if isinstance(v, (list, tuple)):
        items = [_encode(x) for x in v]
        return items if isinstance(v, list) else {"__tuple__": items}
    if isinstance(v, np.random.RandomState):
        name, keys, pos, has_gauss, gauss = v.get_state()
        return {"__rs__": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)]}
    if isinstance(v, np.random.Generator):
        return {"__gen__": v.bit_generator.state}
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        return {"__dict__": {k: _encode(x) for k, x in v.items()}}
    raise TypeError(type(v).__name__)


def _decode(v):
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if not isinstance(v, dict):
        return v
    if "__np__" in v:
        return np.dtype(v["__np__"]).type(v["v"])
    if "__nd__" in v:
        return np.asarray(v["v"], dtype=np.dtype(v["__nd__"])).reshape(v["shape"])
    if "__tuple__" in v:
        return tuple(_decode(x) for x in v["__tuple__"])
    if "__dict__" in v:
        return {k: _decode(x) for k, x in v["__dict__"].items()}
    raise ValueError(f"unknown encoded value {sorted(v)}")


def _attrs_of(obj) -> dict:
    """{attribute: encoded value} of ``obj``, recursing into wrapped envs and game objects; what cannot be held as
    JSON (spaces, renderers) is left out, as it is not part of the game's state."""
    out = {}
    for k, v in vars(obj).items():
        if k in _SKIP:
            continue
        if _is_state_object(v):
            out[k] = {"__obj__": _attrs_of(v)}
            continue
        try:
            out[k] = _encode(v)
        except TypeError:
            continue
    return out


def _set_attrs(obj, state: dict) -> None:
    """Write ``_attrs_of``'s values back into ``obj`` (an env of the same id): random generators are set in place, so
    that objects sharing one keep sharing it."""
    for k, v in state.items():
        if isinstance(v, dict) and "__obj__" in v:
            _set_attrs(getattr(obj, k), v["__obj__"])
        elif isinstance(v, dict) and "__rs__" in v:
            name, keys, pos, has_gauss, gauss = v["__rs__"]
            getattr(obj, k).set_state((name, np.asarray(keys, np.uint32), pos, has_gauss, gauss))
        elif isinstance(v, dict) and "__gen__" in v:
            getattr(obj, k).bit_generator.state = v["__gen__"]
        else:
            setattr(obj, k, _decode(v))


def upscale(img: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement of an [H, W, 3] image (pixels stay crisp)."""
    return np.kron(img, np.ones((scale, scale, 1), np.uint8)) if scale > 1 else img


def agent_view(obs: np.ndarray, family: str, scale: int = 4) -> np.ndarray:
    """An RGB picture of one observation as the network receives it."""
    obs = np.asarray(obs)
    if family == "ale":
        img = np.repeat(obs[-1][..., None], 3, -1)  # the newest of the stacked frames
    elif family == "minatar":
        c, h, w = obs.shape
        img = np.zeros((h, w, 3), np.uint8)
        for ch in range(c):
            img[obs[ch] > 0] = _PALETTE[ch % len(_PALETTE)]
    else:
        return vector_image(obs)
    return upscale(img, scale)


def vector_image(x: np.ndarray, width: int = 240, bar: int = 18) -> np.ndarray:
    """A vector observation as horizontal bars around a centre line (classic control's 'frame')."""
    x = np.asarray(x, dtype=np.float64).ravel()
    img = np.full((bar * len(x) + 4, width, 3), 255, np.uint8)
    mid, span = width // 2, width // 2 - 4
    scale = max(1.0, float(np.abs(x).max()))
    for i, v in enumerate(x):
        n = int(round(span * v / scale))
        lo, hi = sorted((mid, mid + n))
        img[2 + i * bar: (i + 1) * bar - 2, lo:hi + 1] = (31, 119, 180) if v >= 0 else (214, 39, 40)
    img[:, mid] = 0
    return img


@dataclass
class Trace:
    """One episode with both policies evaluated on every frame (arrays indexed by time t = 0..T-1)."""

    env_id: str
    family: str
    action_names: list[str]
    driver: str
    seed: int
    obs: np.ndarray              # [T, *obs_shape] what the networks saw
    screens: np.ndarray          # [T, H, W, 3] what a human sees
    teacher_out: np.ndarray      # [T, A] raw outputs (Q-values or logits)
    student_out: np.ndarray      # [T, A]
    teacher_kind: str
    student_kind: str
    actions: np.ndarray          # [T] the action taken (by the driver)
    rewards: np.ndarray          # [T] reward after the action at t
    meta: dict = field(default_factory=dict)
    snapshots: list | None = field(default=None, repr=False)  # emulator states, live traces only

    @property
    def length(self) -> int:
        return len(self.actions)

    @property
    def names(self) -> tuple[str, str]:
        """What the two networks are called in views: ("teacher", "student"), or two peers' names."""
        return tuple(self.meta.get("names", ("teacher", "student")))

    @property
    def teacher_probs(self) -> np.ndarray:
        return policy_probs(self.teacher_out, self.teacher_kind, self.meta.get("teacher_tau"))

    @property
    def student_probs(self) -> np.ndarray:
        return policy_probs(self.student_out, self.student_kind, self.meta.get("student_tau"))

    @property
    def teacher_actions(self) -> np.ndarray:
        return self.teacher_out.argmax(-1)

    @property
    def student_actions(self) -> np.ndarray:
        return self.student_out.argmax(-1)

    @property
    def agree(self) -> np.ndarray:
        return self.teacher_actions == self.student_actions

    @property
    def disagreements(self) -> np.ndarray:
        return np.flatnonzero(~self.agree)

    def next_disagreement(self, t: int) -> int | None:
        """The first frame after t where the two greedy actions differ (wrapping round), or None."""
        d = self.disagreements
        if not len(d):
            return None
        later = d[d > t]
        return int(later[0] if len(later) else d[0])

    def summary(self) -> dict:
        return {"env_id": self.env_id, "driver": self.driver, "seed": self.seed, "frames": self.length,
                "return": float(self.rewards.sum()), "agreement": float(self.agree.mean()) if self.length else 0.0,
                "disagreements": int((~self.agree).sum())}

    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save

        arrays = {k: np.ascontiguousarray(getattr(self, k)) for k in
                  ("obs", "screens", "teacher_out", "student_out", "actions", "rewards")}
        meta = {"env_id": self.env_id, "family": self.family, "action_names": self.action_names,
                "driver": self.driver, "seed": self.seed, "teacher_kind": self.teacher_kind,
                "student_kind": self.student_kind, "meta": self.meta}
        data = save(arrays, metadata={"format": TRACE_FORMAT, "trace": json.dumps(meta)})
        path = Path(path)
        atomic_write_bytes(path, data)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Trace":
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no trace at {path}; record one with workbench.trace.record_trace(...).save()")
        try:
            with safe_open(str(path), "np") as f:
                header = f.metadata() or {}
                arrays = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own error types for truncated/foreign bytes
            raise CheckpointError(f"{path} is not a readable trace file ({e}); record the trace again") from None
        if header.get("format") != TRACE_FORMAT:
            raise CheckpointError(f"{path} is not a workbench trace (format {header.get('format')!r}, "
                                  f"expected {TRACE_FORMAT!r})")
        m = json.loads(header["trace"])
        return cls(env_id=m["env_id"], family=m["family"], action_names=m["action_names"], driver=m["driver"],
                   seed=m["seed"], teacher_kind=m["teacher_kind"], student_kind=m["student_kind"], meta=m["meta"],
                   **arrays)


def _as_policy(p):
    """A Policy as is; a run folder or shipped name loaded."""

    return load(p) if isinstance(p, (str, Path)) else p


@torch.no_grad()
def record_trace(teacher, student, spec: EnvSpec, driver: str = "teacher", seed: int = 0, max_steps: int = 2_000,
                 epsilon: float = 0.0, keep_snapshots: bool = True, teacher_tau: float | None = None,
                 device: str | None = None, names: tuple[str, str] = ("teacher", "student")) -> Trace:
    """Play one episode with ``driver`` acting (greedy, or epsilon-greedy) and both networks on every frame.

    ``teacher``/``student`` are Policy objects or run folders. Both must have ``spec.n_actions`` outputs.
    ``device``: where both networks run (``hardware.resolve_device``; default: where they are, a loaded folder's on
    the CPU). ``names``: what the views call the two (two peers of dual distillation: ("learner a", "learner b"));
    ``driver`` still says "teacher" for the first and "student" for the second.
    """
    if driver not in ("teacher", "student"):
        raise ValueError(f"driver must be 'teacher' or 'student', got {driver!r}")
    teacher, student = _as_policy(teacher), _as_policy(student)
    if device is not None:
        where = resolve_device(device)
        teacher, student = teacher.to(where), student.to(where)
    for name, p in (("teacher", teacher), ("student", student)):
        check_fits(p, spec, f"the {name}")
        if p.n_actions != spec.n_actions:
            raise ValueError(f"the {name} has {p.n_actions} actions but {spec.env_id} has {spec.n_actions}; "
                             f"use a {name} trained on {spec.env_id}")
    teacher.eval()
    student.eval()
    env = SingleEnv(spec, seed)
    rng = np.random.default_rng(seed)
    obs = env.reset()
    rows = {k: [] for k in ("obs", "screens", "teacher_out", "student_out", "actions", "rewards")}
    snaps = [] if keep_snapshots else None
    for _ in range(max_steps):
        if snaps is not None:
            snaps.append(env.snapshot())
        t_out = teacher.logits(obs[None]).cpu().numpy()[0]
        s_out = student.logits(obs[None]).cpu().numpy()[0]
        a = int((t_out if driver == "teacher" else s_out).argmax())
        if epsilon > 0 and rng.random() < epsilon:
            a = int(rng.integers(spec.n_actions))
        rows["obs"].append(obs)
        rows["screens"].append(env.screen(obs))
        rows["teacher_out"].append(t_out)
        rows["student_out"].append(s_out)
        rows["actions"].append(a)
        obs, r, done = env.step(a)
        rows["rewards"].append(r)
        if done:
            break
    arrays = {k: np.asarray(v) for k, v in rows.items()}
    arrays["teacher_out"] = arrays["teacher_out"].astype(np.float32)
    arrays["student_out"] = arrays["student_out"].astype(np.float32)
    arrays["rewards"] = arrays["rewards"].astype(np.float32)
    arrays["actions"] = arrays["actions"].astype(np.int64)
    meta = {"epsilon": epsilon, "teacher_params": teacher.n_params, "student_params": student.n_params,
            "teacher_tau": teacher_tau, "settings": spec.settings, "done": bool(done), "names": list(names)}
    return Trace(env_id=spec.env_id, family=spec.family, action_names=list(spec.action_meanings), driver=driver,
                 seed=seed, teacher_kind=teacher.kind, student_kind=student.kind, meta=meta, snapshots=snaps,
                 **arrays)


@torch.no_grad()
def branch(trace: Trace, t: int, teacher, student, steps: int = 30) -> dict:
    """From frame ``t`` of a live trace, let the teacher and the student each play on greedily for ``steps``.

    Returns {"teacher": {...}, "student": {...}, "part": k} with each path's screens, actions and rewards and
    ``part``, the first step at which the two paths' observations differ (None if they never do).
    """
    if not trace.snapshots:
        raise ValueError("this trace has no emulator snapshots (loaded from a file or recorded with "
                         "keep_snapshots=False); record it again with record_trace(..., keep_snapshots=True)")
    if not 0 <= t < trace.length:
        raise ValueError(f"frame {t} is outside the trace (0..{trace.length - 1})")
    spec = EnvSpec(trace.env_id, trace.family, tuple(trace.obs.shape[1:]), trace.obs.dtype.name,
                   len(trace.action_names), tuple(trace.action_names), trace.meta["settings"])
    paths = {}
    for who, policy in (("teacher", _as_policy(teacher)), ("student", _as_policy(student))):
        env = SingleEnv(spec, trace.seed)
        if trace.family == "ale":
            env.reset()
        env.restore(trace.snapshots[t])
        obs = trace.obs[t]
        screens, actions, rewards, observations = [], [], [], []
        for _ in range(steps):
            a = int(policy.logits(obs[None]).argmax(-1))
            screens.append(env.screen(obs))
            observations.append(obs)
            actions.append(a)
            obs, r, done = env.step(a)
            rewards.append(r)
            if done:
                break
        paths[who] = {"screens": np.asarray(screens), "actions": np.asarray(actions), "rewards": np.asarray(rewards),
                      "obs": np.asarray(observations)}
    n = min(len(paths["teacher"]["obs"]), len(paths["student"]["obs"]))
    differ = [k for k in range(n) if not np.array_equal(paths["teacher"]["obs"][k], paths["student"]["obs"][k])]
    return {**paths, "part": differ[0] if differ else None, "t": t}


@torch.no_grad()
def saliency(policy, obs: np.ndarray, sigma: float | None = None, stride: int | None = None) -> np.ndarray:
    """Perturbation saliency (Greydanus et al. 2018): S(i, j) = 1/2 ||f(I) - f(I blurred around (i, j))||^2.

    ``f`` is the policy's output vector; the blur is a Gaussian mask of width ``sigma`` centred on (i, j),
    mixing the frame with a blurred copy. Images only ([C, H, W]); returns an [H, W] map scaled to [0, 1].
    For a vector observation, each feature is replaced by 0 in turn and the map is [D].
    """
    from scipy.ndimage import gaussian_filter, zoom

    policy = _as_policy(policy)
    x = np.asarray(obs, dtype=np.float32)
    base = policy.logits(x[None]).cpu().numpy()[0]
    if x.ndim == 1:
        pert = np.repeat(x[None], len(x), 0)
        pert[np.arange(len(x)), np.arange(len(x))] = 0.0
        s = 0.5 * ((policy.logits(pert).cpu().numpy() - base) ** 2).sum(-1)
        return s / max(s.max(), 1e-12)
    c, h, w = x.shape
    sigma = sigma if sigma is not None else max(1.0, h / 17)
    stride = stride if stride is not None else max(1, int(round(h / 17)))
    blurred = np.stack([gaussian_filter(ch, sigma=sigma) for ch in x])
    yy, xx = np.mgrid[0:h, 0:w]
    centres = [(i, j) for i in range(0, h, stride) for j in range(0, w, stride)]
    batch = []
    for i, j in centres:
        m = np.exp(-((yy - i) ** 2 + (xx - j) ** 2) / (2 * sigma ** 2)).astype(np.float32)
        batch.append(x * (1 - m) + blurred * m)
    outs = np.concatenate([policy.logits(np.stack(batch[k:k + 256])).cpu().numpy() for k in range(0, len(batch), 256)])
    scores = 0.5 * ((outs - base) ** 2).sum(-1)
    grid = scores.reshape(len(range(0, h, stride)), len(range(0, w, stride)))
    full = zoom(grid, (h / grid.shape[0], w / grid.shape[1]), order=1) if stride > 1 else grid
    full = np.clip(full[:h, :w], 0, None)
    return (full / max(full.max(), 1e-12)).astype(np.float32)


def confusion(teacher_actions: np.ndarray, student_actions: np.ndarray, n_actions: int) -> np.ndarray:
    """[A, A] counts: row = teacher's action, column = student's action."""
    m = np.zeros((n_actions, n_actions), np.int64)
    np.add.at(m, (np.asarray(teacher_actions), np.asarray(student_actions)), 1)
    return m
