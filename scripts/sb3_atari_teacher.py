"""Train an Atari teacher with Stable-Baselines3 as RL Zoo does, for the bring-your-own-teacher benchmark.

RL Zoo's Atari settings for PPO (hyperparams/ppo.yml, ``atari``): ``*NoFrameskip-v4`` in SB3's AtariWrapper,
4-frame stack, CnnPolicy, 8 envs, n_steps 128, 4 epochs, batch 256, learning rate 2.5e-4 and clip range 0.1 both
annealed linearly to 0, vf_coef 0.5, ent_coef 0.01. RL Zoo anneals over 10M steps; a CPU cannot give that, so the
schedule here runs over ``--steps`` (default 2M) and the run stops at that many steps or at ``--hours``, whichever
comes first. It saves every ``--save-every`` steps (write to a temporary name, then rename) and resumes from its
own file: run the same command again after a stop.

Usage: python scripts/sb3_atari_teacher.py OUT.zip [--game Breakout] [--steps 2000000] [--hours 1.5] [--seed 0]
"""

import argparse
import os
import time
from pathlib import Path

import ale_py
import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack


def linear(start):
    return lambda progress: progress * start  # SB3 passes the remaining progress, 1 -> 0


class SaveAndStop(BaseCallback):
    """Save every ``every`` env steps (atomically) and stop at the wall-clock ``deadline``; log the episode returns."""

    def __init__(self, out: Path, every: int, deadline: float, t0: float):
        super().__init__()
        self.out, self.every, self.deadline, self.t0 = out, every, deadline, t0
        self.next_save = 0

    def _on_training_start(self):
        self.next_save = self.num_timesteps + self.every

    def _save(self):
        tmp = self.out.with_name(self.out.stem + ".tmp.zip")
        self.model.save(tmp)
        os.replace(tmp, self.out)

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_save:
            self._save()
            self.next_save += self.every
            eps = list(self.model.ep_info_buffer)
            mean = sum(e["r"] for e in eps) / max(len(eps), 1)
            print(f"{self.num_timesteps:>9,} steps  {time.time() - self.t0:7.0f} s  "
                  f"mean return of the last training games {mean:.1f} over {len(eps)}", flush=True)
        return time.time() < self.deadline

    def _on_training_end(self):
        self._save()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--game", default="Breakout")
    p.add_argument("--steps", type=int, default=2_000_000)
    p.add_argument("--hours", type=float, default=1.5)
    p.add_argument("--save-every", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    gym.register_envs(ale_py)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = VecFrameStack(make_atari_env(f"{a.game}NoFrameskip-v4", n_envs=8, seed=a.seed), n_stack=4)
    if out.exists():
        model = PPO.load(out, env=env)  # our own file, written by this script
        print(f"resuming {out} at {model.num_timesteps:,} steps", flush=True)
    else:
        model = PPO("CnnPolicy", env, n_steps=128, n_epochs=4, batch_size=256, learning_rate=linear(2.5e-4),
                    clip_range=linear(0.1), vf_coef=0.5, ent_coef=0.01, seed=a.seed, verbose=0)
    t0 = time.time()
    left = a.steps - model.num_timesteps
    if left > 0:
        model.learn(left, callback=SaveAndStop(out, a.save_every, t0 + a.hours * 3600, t0),
                    reset_num_timesteps=model.num_timesteps == 0)
    print(f"{out}: {model.num_timesteps:,} env steps, {time.time() - t0:.0f} s this call", flush=True)


if __name__ == "__main__":
    main()
