"""Replay memory that stores each frame once and stacks on read, with per-state extras (teacher outputs).

A vector env of N copies writes N streams. In each stream an entry holds the newest frame of one observation;
a transition at entry ``j`` goes from the stack ending at ``j`` to the stack ending at ``j + 1``. Where an
episode ends, the terminal frame gets an entry of its own (no transition leaves it), so the next state is
always exact, also for time-limit truncations. Reading a stack walks back at most ``stack - 1`` entries and
pads before an episode's first entry as the env does at reset: with zeros (ale-py's vector env, SB3's
``VecFrameStack``) or with copies of that first frame (``pad="first"``: gym's ``FrameStack``, as cleanrl stacks).
An env that restarts its stack within an episode (SB3's and cleanrl's Atari wrappers after a lost life) passes
``restart`` to :meth:`ReplayMemory.add`, and stacks read across that point restart there too.

For Atari (stack 4 of 84x84 uint8) a transition costs one 7,056-byte frame plus ~10 bytes of action, reward
and flags, instead of the 56,448 bytes of storing obs and next_obs whole.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .hardware import to_device


class Batch(NamedTuple):
    obs: torch.Tensor            # [B, *obs_shape]
    action: torch.Tensor         # [B] int64
    reward: torch.Tensor         # [B] float32
    next_obs: torch.Tensor       # [B, *obs_shape]
    terminated: torch.Tensor     # [B] float32 (1.0 where the episode really ended; a truncation bootstraps)
    extras: dict[str, torch.Tensor]


def stack_padding(settings: dict) -> str:
    """How an env with these settings fills a frame stack at reset: "first" under cleanrl's Atari conventions,
    "zeros" everywhere else."""
    return "first" if settings.get("conventions") == "cleanrl" else "zeros"


class ReplayMemory:
    def __init__(
        self, capacity: int, obs_shape: tuple[int, ...], obs_dtype, n_envs: int = 1, stack: int = 1,
        extras: dict[str, tuple[tuple[int, ...], object]] | None = None, pad: str = "zeros",
    ):
        """``capacity`` transitions over ``n_envs`` streams; ``stack`` > 1 means obs_shape[0] stacked frames.

        ``extras`` names per-state arrays stored beside each transition, e.g.
        ``{"teacher": ((n_actions,), np.float32)}`` for a teacher's logits. ``pad``: what a stack holds before
        its episode's first frame, "zeros" or "first" (copies of that frame; :func:`stack_padding`).
        """
        if pad not in ("zeros", "first"):
            raise ValueError(f"pad must be 'zeros' or 'first', got {pad!r}")
        self.pad = pad
        if capacity < n_envs * (stack + 2):
            raise ValueError(f"capacity {capacity} is too small for {n_envs} envs with stack {stack}")
        self.obs_shape, self.stack, self.n_envs = tuple(obs_shape), stack, n_envs
        self.frame_shape = self.obs_shape[1:] if stack > 1 else self.obs_shape
        if stack > 1 and self.obs_shape[0] != stack:
            raise ValueError(f"obs_shape {obs_shape} does not start with the stack size {stack}")
        self.per_env = capacity // n_envs
        c = (n_envs, self.per_env)
        self.frames = np.zeros(c + self.frame_shape, dtype=obs_dtype)
        self.action = np.zeros(c, dtype=np.int32)
        self.reward = np.zeros(c, dtype=np.float32)
        self.terminated = np.zeros(c, dtype=bool)
        self.first = np.zeros(c, dtype=bool)      # the entry is the first observation of an episode
        self.has_tr = np.zeros(c, dtype=bool)     # a transition leaves this entry
        self.extras = {k: np.zeros(c + tuple(shape), dtype=dt) for k, (shape, dt) in (extras or {}).items()}
        # np.zeros maps pages lazily and the first write to each faults (several us in a VM): collection would pay
        # one fault per page as it fills the memory, at a steady cost of up to half a MinAtar env step. Touching the
        # pages here pays that once, up front, before the first step is timed or taken.
        for a in [self.frames, *self.extras.values()]:
            a.reshape(-1)[::max(1, 4096 // a.itemsize)] = 0
        self._rows = np.arange(n_envs, dtype=np.int64) * self.per_env  # flat index of each stream's entry 0
        self._head = np.zeros(n_envs, dtype=np.int64)     # next entry to write, per stream
        self._written = np.zeros(n_envs, dtype=np.int64)  # entries written so far, per stream
        self._stage: dict | None = None                   # steps added with defer=True, not yet written
        self._filled: np.ndarray | None = None            # entries with data per stream, until the next write
        # A run of k steps takes at most 2k entries of a stream: fewer than it holds, so none overwrites another.
        self._flush_at = max(1, min(self.FLUSH_STEPS, (self.per_env - 1) // 2))
        self._current = np.zeros(n_envs, dtype=bool)      # the stream's newest entry is the obs we act from
        self.mirror: torch.device | None = None          # where a copy of frames and extras lives (keep_on)
        self._frames_t: torch.Tensor | None = None
        self._extras_t: dict[str, torch.Tensor] = {}

    # -- writing -------------------------------------------------------------------------------------------
    # A MinAtar vector step takes 100-250 us here and each numpy call a few us, so a step's own writes (a dozen index
    # operations into each stream's ring) would cost the collector a third of its speed (`workbench bench` ->
    # collector). ``add(..., defer=True)`` copies the step into a small staging buffer instead (one plain row copy per
    # field, while the env's arrays are still in cache) and writes a run of steps with one set of vectorised index
    # operations: when the buffer is full, or before anything reads the memory (every read method flushes, as do the
    # ``head`` and ``written`` properties). Eager and deferred writes leave the same arrays (tests).
    FLUSH_STEPS = 128

    @property
    def head(self) -> np.ndarray:
        """Next entry to write, per stream."""
        self.flush()
        return self._head

    @property
    def written(self) -> np.ndarray:
        """Entries written so far, per stream."""
        self.flush()
        return self._written

    def add(self, obs, action, reward, terminated, truncated, next_obs, extras: dict | None = None,
            streams: slice | None = None, restart: np.ndarray | None = None, defer: bool = False,
            final_obs=None) -> None:
        """One vector step: ``next_obs`` is the true next observation (the terminal one where done). ``streams``: the
        step of some envs only (a slice of the streams: half the envs, stepped while the other half waits).
        ``restart``: where the env began a fresh frame stack at ``next_obs`` within the episode (a lost life under
        SB3's or cleanrl's Atari wrappers). ``defer``: the step may be written later, with others (see above).
        ``final_obs``: where an episode ended, ``next_obs`` may hold the next episode's first observation and
        ``final_obs[env]`` the terminal one (a vector env's ``info["final_obs"]``), so the caller need not merge
        them."""
        if streams is not None or not defer:
            self.flush()
            envs = None if streams is None else np.arange(self.n_envs)[streams]
            one = lambda x: np.asarray(x)[None]  # noqa: E731
            self._write_steps(envs, self._newest(np.asarray(obs)), one(action), one(reward), one(terminated),
                              one(truncated), one(self._newest(np.asarray(next_obs))),
                              {k: one(v) for k, v in (extras or {}).items()},
                              None if restart is None else one(restart), None if final_obs is None else
                              self._finals(final_obs, np.logical_or(terminated, truncated)))
            return
        st = self._stage
        if st is None:
            st = self._stage = self._staging(action, reward, next_obs, extras)
        i = st["k"]
        if i == 0:
            st["obs0"] = self._newest(np.asarray(obs)).copy()
        st["action"][i], st["reward"][i], st["term"][i], st["trunc"][i] = action, reward, terminated, truncated
        st["next"][i] = self._newest(next_obs)
        for key, v in (extras or {}).items():
            st["extras"][key][i] = v
        if final_obs is not None:  # the terminal frames, copied while they are in cache
            self._copy_finals(st["has_final"][i], st["final"][i], final_obs, np.logical_or(terminated, truncated))
            st["finals"] = True
        if restart is not None:
            st["restart"][i] = restart
            st["restarts"] = True
        st["k"] = i + 1
        if i + 1 == len(st["action"]):
            self.flush()

    def _staging(self, action, reward, next_obs, extras) -> dict:
        k, m = self._flush_at, self.n_envs
        field = lambda x: np.zeros((k,) + np.shape(x), dtype=np.asarray(x).dtype)  # noqa: E731
        return {"k": 0, "action": field(action), "reward": field(reward), "term": np.zeros((k, m), bool),
                "trunc": np.zeros((k, m), bool), "next": field(self._newest(np.asarray(next_obs))),
                "restart": np.zeros((k, m), bool), "final": field(self._newest(np.asarray(next_obs))),
                "has_final": np.zeros((k, m), bool),
                "extras": {key: field(v) for key, v in (extras or {}).items()}, "finals": False, "restarts": False,
                "obs0": None}

    def _newest(self, obs: np.ndarray) -> np.ndarray:
        """The newest frame of each observation [m, ...] (a frame stack's last)."""
        return obs[:, -1] if self.stack > 1 else obs

    def _copy_finals(self, where: np.ndarray, frames: np.ndarray, final_obs, ended: np.ndarray) -> None:
        """The newest frame of each ended env's ``final_obs`` into ``frames`` [m, ...], marked in ``where`` [m]."""
        for e in np.flatnonzero(ended).tolist():
            frames[e] = final_obs[e][-1] if self.stack > 1 else final_obs[e]
            where[e] = True

    def _finals(self, final_obs, ended: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step's ``final_obs`` as ``_write_steps`` takes it: ([1, m] where, [1, m, ...] newest frames)."""
        where = np.zeros((1, len(ended)), dtype=bool)
        frames = np.zeros((1, len(ended)) + self.frame_shape, dtype=self.frames.dtype)
        self._copy_finals(where[0], frames[0], final_obs, ended)
        return where, frames

    def flush(self) -> None:
        """Write the steps that ``add(..., defer=True)`` keeps waiting."""
        st = self._stage
        if st is None or not st["k"]:
            return
        k = st["k"]
        self._write_steps(None, st["obs0"], st["action"][:k], st["reward"][:k], st["term"][:k], st["trunc"][:k],
                          st["next"][:k], {key: v[:k] for key, v in st["extras"].items()},
                          st["restart"][:k] if st["restarts"] else None,
                          (st["has_final"][:k], st["final"][:k]) if st["finals"] else None)
        if st["restarts"]:
            st["restart"][:k] = False
        if st["finals"]:
            st["has_final"][:k] = False
        st["k"], st["finals"], st["restarts"], st["obs0"] = 0, False, False, None

    def _write_steps(self, envs: np.ndarray | None, obs0: np.ndarray, action: np.ndarray, reward: np.ndarray,
                     term: np.ndarray, trunc: np.ndarray, next_frames: np.ndarray, extras: dict,
                     restart: np.ndarray | None, finals: tuple | None) -> None:
        """k consecutive vector steps of streams ``envs`` (None: every stream): the newest frame of the first step's
        obs [m, ...], then [k, m, ...] arrays of what :meth:`add` takes (only the newest frame of each next obs), and
        ``finals`` None or ([k, m] where a terminal frame replaces the next obs's, [k, m, ...] those frames).

        Per stream, a step writes the frame it acted from as a new entry where the stream has no current observation
        (after a done, or at the start), the transition at the entry of that frame, and its next frame as the entry
        after it. Over k steps the entries of step i are therefore offset by i plus the fresh frames before it."""
        k = len(action)
        rows, h0 = (self._rows, self._head) if envs is None else (self._rows[envs], self._head[envs])
        cur0 = self._current if envs is None else self._current[envs]
        ended = term | trunc
        fresh = np.empty(ended.shape, dtype=bool)      # the step's obs needs an entry of its own
        fresh[0] = ~cur0
        fresh[1:] = ended[:-1]
        offset = np.arange(k)[:, None] + np.cumsum(fresh, axis=0)
        at = rows + (h0 + offset - 1) % self.per_env   # [k, m] flat entry of each step's obs and transition
        nxt = rows + (h0 + offset) % self.per_env      # [k, m] flat entry of each step's next obs
        frames, first, has_tr = self._flat(self.frames), self._flat(self.first), self._flat(self.has_tr)
        first[nxt] = False
        has_tr[nxt] = False
        frames[nxt] = next_frames
        written = [nxt.reshape(-1)]
        if fresh.any():  # a step's obs is the step before's next obs as the env returned it (a reset one after a done)
            i, e = np.nonzero(fresh)
            later = i > 0
            obs = next_frames[i[later] - 1, e[later]]
            if not later.all():
                obs = np.concatenate([obs0[e[~later]], obs])
                i, e = np.concatenate([i[~later], i[later]]), np.concatenate([e[~later], e[later]])
            frames[at[i, e]] = obs
            first[at[i, e]] = True
            written.append(at[i, e])
        if finals is not None:  # the terminal frames over the next episodes' first ones
            frames[nxt[finals[0]]] = finals[1][finals[0]]
        self._flat(self.action)[at] = action
        self._flat(self.reward)[at] = reward
        self._flat(self.terminated)[at] = term
        has_tr[at] = True
        for key, values in extras.items():
            self._flat(self.extras[key])[at] = values
            if self.mirror is not None:
                self._extras_t[key][to_device(at.reshape(-1), self.mirror)] = to_device(
                    self._flat(self.extras[key])[at.reshape(-1)], self.mirror)
        if restart is not None:
            first[nxt[np.asarray(restart, dtype=bool)]] = True
        if self.mirror is not None:
            flat = np.concatenate(written)
            self._frames_t[to_device(flat, self.mirror)] = to_device(frames[flat], self.mirror)
        used = offset[-1] + 1   # entries per stream: the k next frames and the fresh ones
        self._filled = None
        if envs is None:
            self._head = (h0 + used) % self.per_env
            self._written += used
            self._current = ~ended[-1]
        else:
            self._head[envs] = (h0 + used) % self.per_env
            self._written[envs] += used
            self._current[envs] = ~ended[-1]

    def set_extras(self, key: str, env_idx: np.ndarray, entry_idx: np.ndarray, values: np.ndarray) -> None:
        """Overwrite stored extras (e.g. refreshed teacher outputs) at positions from :meth:`sample_indices`."""
        self.flush()
        self.extras[key][env_idx, entry_idx] = values
        if self.mirror is not None:
            self._extras_t[key][to_device(env_idx * self.per_env + entry_idx, self.mirror)] = to_device(
                self.extras[key][env_idx, entry_idx], self.mirror)

    # -- a copy on the accelerator -------------------------------------------------------------------------
    def keep_on(self, device) -> None:
        """Mirror frames and extras on ``device`` (a GPU, when ``hardware.memory_on_device`` says they fit):
        ``sample_states`` then gathers its minibatches there, and only each step's new frames cross the bus. The
        numpy arrays stay the memory of record (checkpoints are written from them, so they stay device-free)."""
        self.flush()
        self.mirror = torch.device(device)
        self._refresh_mirror()

    def _refresh_mirror(self) -> None:
        if self.mirror is not None:
            self._frames_t = torch.as_tensor(self._flat(self.frames)).to(self.mirror)
            self._extras_t = {k: torch.as_tensor(self._flat(v)).to(self.mirror) for k, v in self.extras.items()}

    def _stacked_on_mirror(self, e: np.ndarray, j: np.ndarray) -> torch.Tensor:
        """:meth:`stacked` of frame stacks (stack > 1), gathered on the mirror: the indices and the episode-start mask
        are made on the host."""
        idx = np.empty((self.stack, len(e)), dtype=np.int64)
        keep = np.empty((self.stack, len(e)), dtype=bool)
        alive = np.ones(len(e), dtype=bool)
        for k in range(self.stack):  # k = 0 is the newest frame, the last of the stack
            jk = (j - k) % self.per_env
            idx[k], keep[k] = e * self.per_env + jk, alive
            if self.pad == "first" and k:  # before the first frame: that frame again
                idx[k], keep[k] = np.where(alive, idx[k], idx[k - 1]), True
            alive = alive & ~self.first[e, jk]
        rows = self._frames_t.index_select(0, to_device(idx.reshape(-1), self.mirror)).view(
            (self.stack, len(e)) + self.frame_shape)
        rows = rows * to_device(keep, self.mirror).view((self.stack, len(e)) + (1,) * len(self.frame_shape))
        return rows.flip(0).transpose(0, 1).contiguous()

    # -- reading -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        self.flush()
        return int(self.has_tr.sum())

    def nbytes(self) -> int:
        arrays = [self.frames, self.action, self.reward, self.terminated, self.first, self.has_tr]
        return sum(a.nbytes for a in arrays + list(self.extras.values()))

    def _valid(self, e: np.ndarray, j: np.ndarray) -> np.ndarray:
        ok = self.has_tr.reshape(-1).take(e * self.per_env + j)
        if self.stack == 1:
            return ok
        full = self._written[e] > self.per_env
        # The oldest stack-1 entries of a full stream may be stacked over data already overwritten.
        age = (j - self._head[e]) % self.per_env
        return ok & ~(full & (age < self.stack - 1))

    def sample_indices(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Uniform over stored transitions: (stream index, entry index), each [B]."""
        if self.stack == 1:
            return np.divmod(self._sample_flat(batch_size, rng), self.per_env)
        e_out, j_out, need = [], [], batch_size
        filled = self._filled_entries()
        while need > 0:
            e, j = self._draw(rng, need, filled)
            keep = self._valid(e, j)
            e_out.append(e[keep][:need])
            j_out.append(j[keep][:need])
            need -= len(e_out[-1])
        if len(e_out) == 1:
            return e_out[0], j_out[0]
        return np.concatenate(e_out), np.concatenate(j_out)

    def _filled_entries(self) -> np.ndarray:
        """Entries that hold data, per stream (checked non-empty); kept until the next write."""
        self.flush()
        if self._filled is None:
            if self._written.max() < 2:  # not len(self): that sums a flag per entry, 1M of them at full scale
                raise ValueError("the memory is empty: collect before sampling")
            self._filled = np.minimum(self._written, self.per_env)
        return self._filled

    def _draw(self, rng: np.random.Generator, need: int, filled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidate (stream, entry) pairs, more than ``need``: one uniform draw for both indices, and an over-draw
        so that one pass nearly always suffices (at most one entry in episode length + 1 per stream has no
        transition)."""
        u = rng.random((2, need + need // 4 + 16))
        e = (u[0] * self.n_envs).astype(np.int64)
        return e, (u[1] * filled.take(e)).astype(np.int64)

    def _sample_flat(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """:meth:`sample_indices` for stack 1 (every entry with a transition is a valid state), as flat indices
        into :meth:`_flat` arrays: the same draws in fewer numpy calls, which cost several us each between a
        student's updates (a fifth of the distance to a bare torch loop, `workbench bench` -> distill_updates)."""
        out, need = [], batch_size
        filled = self._filled_entries()
        has_tr = self.has_tr.reshape(-1)
        while need > 0:
            e, j = self._draw(rng, need, filled)
            j += self._rows.take(e)
            out.append(j[has_tr.take(j)][:need])
            need -= len(out[-1])
        return out[0] if len(out) == 1 else np.concatenate(out)

    def stacked(self, e: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Observations [B, *obs_shape] ending at entries j of streams e."""
        self.flush()
        if self.stack == 1:
            return self._flat(self.frames).take(e * self.per_env + j, axis=0)
        out = np.zeros((len(e), self.stack) + self.frame_shape, dtype=self.frames.dtype)
        alive = np.ones(len(e), dtype=bool)
        for k in range(self.stack):
            jk = (j - k) % self.per_env
            out[alive, self.stack - 1 - k] = self.frames[e[alive], jk[alive]]
            # Frames before the episode's first entry are zeros, or that first frame again (pad="first"), as the
            # env stacks them at reset.
            if self.pad == "first" and k:
                out[~alive, self.stack - 1 - k] = out[~alive, self.stack - k]
            alive &= ~self.first[e, jk]
        return out

    def sample(self, batch_size: int, rng: np.random.Generator, device="cpu") -> Batch:
        e, j = self.sample_indices(batch_size, rng)
        t = lambda a: to_device(a, torch.device(device))  # noqa: E731
        return Batch(
            obs=t(self.stacked(e, j)), action=t(self.action[e, j].astype(np.int64)), reward=t(self.reward[e, j]),
            next_obs=t(self.stacked(e, (j + 1) % self.per_env)),
            terminated=t(self.terminated[e, j].astype(np.float32)),
            extras={k: t(v[e, j]) for k, v in self.extras.items()},
        )

    def sample_states(self, batch_size: int, rng: np.random.Generator, device="cpu"):
        """Only states and their extras (what distillation needs): (obs [B, ...], {key: [B, ...]}), gathered on the
        mirror where :meth:`keep_on` made one, else copied from host memory to ``device``."""
        if self.stack == 1:  # every stored state is one frame: gathered by flat index
            flat = self._sample_flat(batch_size, rng)
        else:
            e, j = self.sample_indices(batch_size, rng)
            flat = e * self.per_env + j
        if self.mirror is not None:
            flat_t = to_device(flat, self.mirror)
            obs = self._frames_t.index_select(0, flat_t) if self.stack == 1 else self._stacked_on_mirror(e, j)
            return obs, {k: v.index_select(0, flat_t) for k, v in self._extras_t.items()}
        device = torch.device(device)
        obs = self._flat(self.frames).take(flat, axis=0) if self.stack == 1 else self.stacked(e, j)
        return (to_device(obs, device),
                {k: to_device(self._flat(v).take(flat, axis=0), device) for k, v in self.extras.items()})

    def _flat(self, a: np.ndarray) -> np.ndarray:
        """[n_envs * per_env, ...] view of a per-stream array, for one flat ``take`` instead of 2-D indexing."""
        return a.reshape((self.n_envs * self.per_env,) + a.shape[2:])

    # -- resume --------------------------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        self.flush()
        arrays = dict(frames=self.frames, action=self.action, reward=self.reward, terminated=self.terminated,
                      first=self.first, has_tr=self.has_tr, head=self._head, written=self._written)
        arrays.update({f"extra.{k}": v for k, v in self.extras.items()})
        return {k: np.ascontiguousarray(v) for k, v in arrays.items()}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for k, v in arrays.items():
            group, _, name = k.partition(".")
            target = self.extras[name] if group == "extra" and name else getattr(self, k)
            if target.shape != v.shape:
                raise ValueError(f"memory array {k} has shape {v.shape}, expected {target.shape}")
            target[...] = v
        # Resumed envs start fresh episodes, so no stream holds a current observation.
        self._current[:] = False
        self._filled = None
        self._refresh_mirror()
