"""MinAtar and classic-control envs stepped by worker processes, a share of the envs each.

gymnasium's ``AsyncVectorEnv`` runs one env per process: a MinAtar step takes a few microseconds and a pipe round
trip more, so it is many times slower than stepping them all in one process (``bench``'s ``vector_env``). Here each
worker steps a ``SyncVectorEnv`` of consecutive envs (its own share), writes observations, rewards and flags into
shared memory, and answers with one small message; the caller's process stays free between ``send`` and ``recv``.

The envs are the ones ``make_env`` builds in one process, seeded the same way (env i of n from seed + i), and a
step returns what ``SyncVectorEnv`` returns, arrays and ``info`` (``final_obs`` where an episode ended, SAME_STEP
autoreset), so a run gives the same numbers with any number of workers (tests). ``make_env`` uses it only where
``--env-threads`` asks (``hardware.env_processes``): on a CPU a whole run measured no faster with it.
"""

from __future__ import annotations

import multiprocessing as mp
import sys

import gymnasium as gym
import numpy as np

# Below this many envs per worker, the round trip to the workers costs more than the steps it spreads: on a 2-core
# VM, MinAtar Breakout with 2 workers stepped 0.24x as fast as one process at 8 envs, 1.0x at 64, 1.24x at 128 and
# 1.41x at 256 (docs/lab-notes/hardware.md; bench's vector_env measures it on any machine).
MIN_ENVS_PER_WORKER = 64


def worker_count(n_envs: int, threads: int) -> int:
    """Worker processes for ``n_envs`` MinAtar or classic envs given at most ``threads`` of them: at least
    ``MIN_ENVS_PER_WORKER`` envs each; 1 means they step in the caller's process."""
    return max(1, min(threads, n_envs // MIN_ENVS_PER_WORKER))


def _views(buffers: dict, layout: dict) -> dict:
    return {k: np.frombuffer(buffers[k], dtype=dtype).reshape(shape) for k, (shape, dtype) in layout.items()}


def _work(conn, env_id: str, share: slice, seed: int, settings: dict, buffers: dict, layout: dict) -> None:
    import signal

    from .envs import make_env

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle: it closes the workers
    envs = None
    try:
        envs, _ = make_env(env_id, share.stop - share.start, seed + share.start, num_threads=1, **settings)
        arrays = _views(buffers, layout)
        conn.send(("ready", None))
        while True:
            cmd, arg = conn.recv()
            if cmd == "step":
                obs, reward, term, trunc, info = envs.step(arrays["action"][share])
                arrays["reward"][share], arrays["term"][share], arrays["trunc"][share] = reward, term, trunc
            elif cmd == "reset":
                obs, info = envs.reset(seed=arg)
            else:
                break
            arrays["obs"][share] = obs
            conn.send(("ok", info or None))
    except (EOFError, BrokenPipeError):  # the caller is gone
        pass
    except Exception as err:  # the caller raises it, named, instead of waiting on a dead pipe
        conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        if envs is not None:
            envs.close()
        conn.close()


def _merge(parts: list, shares: list[slice], n: int) -> dict:
    """One info dict for all envs from the workers' (None where a worker's was empty), as one vector env gives it:
    each per-env array at its worker's share, nested dicts (``final_info``) alike."""
    out: dict = {}
    keys = dict.fromkeys(k for info in parts if info for k in info)
    for key in keys:
        values = [None if not info or key not in info else info[key] for info in parts]
        if any(isinstance(v, dict) for v in values):
            out[key] = _merge(values, shares, n)
            continue
        for value, share in zip(values, shares):
            if value is None:
                continue
            value = np.asarray(value)
            if key not in out:
                out[key] = (np.full((n,) + value.shape[1:], None, dtype=object) if value.dtype == object
                            else np.zeros((n,) + value.shape[1:], dtype=value.dtype))
            out[key][share] = value
    return out


class ProcessVectorEnv(gym.vector.VectorEnv):
    """``n_envs`` envs of ``env_id`` over ``workers`` processes (consecutive shares); ``send``/``recv`` split a step
    so that the caller can work while the envs step. Same observations, rewards, flags and ``final_obs`` as
    ``make_env``'s ``SyncVectorEnv`` with the same seed."""

    def __init__(self, env_id: str, n_envs: int, seed: int, workers: int, settings: dict):
        from .envs import make_env

        probe, _ = make_env(env_id, 1, seed, **settings)
        self.single_observation_space, self.single_action_space = (probe.single_observation_space,
                                                                   probe.single_action_space)
        probe.close()
        self.num_envs = n_envs
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, n_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, n_envs)
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self.render_mode = None
        space = self.single_observation_space
        self._layout = {"obs": ((n_envs,) + space.shape, space.dtype), "action": ((n_envs,), np.int64),
                        "reward": ((n_envs,), np.float64), "term": ((n_envs,), np.bool_),
                        "trunc": ((n_envs,), np.bool_)}
        # fork: the workers only step envs (no torch, no CUDA), and start in milliseconds; spawn where there is no fork.
        ctx = mp.get_context("fork" if sys.platform == "linux" else "spawn")
        buffers = {k: ctx.RawArray("b", int(np.prod(shape)) * np.dtype(dtype).itemsize)
                   for k, (shape, dtype) in self._layout.items()}
        self._arrays = _views(buffers, self._layout)
        bounds = np.linspace(0, n_envs, max(1, min(workers, n_envs)) + 1).round().astype(int)
        self.shares = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        self._pipes, self._procs, self._pending, self._waiting = [], [], set(), False
        for share in self.shares:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_work, args=(child, env_id, share, seed, settings, buffers, self._layout),
                               daemon=True)
            proc.start()
            child.close()
            self._pipes.append(parent)
            self._procs.append(proc)
        self._pending = set(range(len(self._pipes)))  # each worker says "ready"
        self._gather()

    def _command(self, messages: list) -> None:
        """Send each worker its message; a worker gone closes all and is raised, named."""
        try:
            for i, (pipe, message) in enumerate(zip(self._pipes, messages)):
                pipe.send(message)
                self._pending.add(i)
        except OSError as err:
            self.close()
            raise RuntimeError(f"an env worker is gone ({type(err).__name__}); the envs are closed") from None

    def _gather(self) -> list:
        """Every worker's reply to the command just sent. A worker's error or death closes all and is raised; so
        does an interrupt (Ctrl-C) while waiting, which would leave the replies out of step with the commands."""
        replies, failed = [], None
        try:
            for i, (pipe, proc) in enumerate(zip(self._pipes, self._procs)):
                try:
                    status, payload = pipe.recv()
                except (EOFError, OSError):
                    status, payload = "error", f"the worker (pid {proc.pid}) died, exit code {proc.exitcode}"
                self._pending.discard(i)
                if status == "error":
                    failed = failed or payload
                replies.append(payload)
        except BaseException:
            self.close()
            raise
        self._waiting = False
        if failed:
            self.close()
            raise RuntimeError(f"an env worker failed: {failed}")
        return replies

    def reset(self, *, seed=None, options=None):
        if self._waiting:
            raise RuntimeError("reset() while a step is in flight: recv() it first")
        if options:
            raise NotImplementedError("ProcessVectorEnv.reset takes no options (a reset mask resets every env here)")
        if not (seed is None or isinstance(seed, (int, np.integer)) or len(seed) == self.num_envs):
            raise ValueError(f"reset(seed=...) takes an int, None or one seed per env ({self.num_envs}), got "
                             f"{len(seed)}")
        parts = [None if seed is None else int(seed) + share.start if isinstance(seed, (int, np.integer))
                 else list(seed)[share] for share in self.shares]
        self._command([("reset", part) for part in parts])
        infos = self._gather()
        return self._arrays["obs"].copy(), _merge(infos, self.shares, self.num_envs)

    def send(self, actions) -> None:
        """Start a step of every env with ``actions``; :meth:`recv` returns its results."""
        if self._waiting:
            raise RuntimeError("send() twice without recv(): receive the step in flight first")
        self._arrays["action"][:] = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        self._waiting = True
        self._command([("step", None)] * len(self._pipes))

    def recv(self):
        if not self._waiting:
            raise RuntimeError("recv() without send(): start a step with send(actions)")
        infos = self._gather()
        a = self._arrays
        return (a["obs"].copy(), a["reward"].copy(), a["term"].copy(), a["trunc"].copy(),
                _merge(infos, self.shares, self.num_envs))

    def step(self, actions):
        self.send(actions)
        return self.recv()

    def __del__(self):
        self.close()

    def close(self, **kwargs) -> None:
        if self.closed or not hasattr(self, "_procs"):
            return
        self.closed = True
        for i, pipe in enumerate(self._pipes):
            try:
                if i in self._pending and pipe.poll(1):  # a reply still owed: take it first
                    pipe.recv()
                pipe.send(("close", None))
            except (EOFError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=1)
        for pipe in self._pipes:
            pipe.close()
