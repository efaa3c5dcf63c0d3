"""How far the workbench's Atari frames are from those an SB3-trained teacher saw.

Plays the same random actions (seed 0) in SB3's AtariWrapper on GameNoFrameskip-v4 and in the workbench's ALE env,
no-ops off on both sides so that the episodes start alike, and prints how the 84x84 gray frames differ step by
step (mean and max absolute difference in gray levels, share of pixels that differ) and both returns.
Usage: python scripts/atari_frames_vs_sb3.py [Breakout Pong ...]
"""

import sys

import ale_py
import gymnasium as gym
import numpy as np
from stable_baselines3.common.atari_wrappers import AtariWrapper

from workbench.envs import make_env

gym.register_envs(ale_py)
for game in sys.argv[1:] or ["Breakout", "Pong"]:
    theirs = AtariWrapper(gym.make(f"{game}NoFrameskip-v4"), noop_max=0, terminal_on_life_loss=False,
                          clip_reward=False)
    o_sb3, _ = theirs.reset(seed=0)
    ours, spec = make_env(f"ALE/{game}-v5", 1, 0, noop_max=0)
    o_wb, _ = ours.reset(seed=0)
    rng = np.random.default_rng(0)
    diffs, ret_sb3, ret_wb = [], 0.0, 0.0
    for t in range(300):
        a = int(rng.integers(spec.n_actions))
        d = np.abs(o_sb3[:, :, 0].astype(int) - o_wb[0, -1].astype(int))
        diffs.append((d.mean(), d.max(), (d > 0).mean()))
        o_sb3, r1, term1, trunc1, _ = theirs.step(a)
        o_wb, r2, term2, trunc2, _ = ours.step(np.array([a]))
        ret_sb3, ret_wb = ret_sb3 + r1, ret_wb + float(r2[0])
        if term1 or trunc1 or term2[0] or trunc2[0]:
            break
    d = np.array(diffs)
    print(f"{game}: {len(d)} steps; first frame mean |diff| {d[0, 0]:.2f}, {d[0, 2]:.1%} of pixels; after it mean "
          f"|diff| {d[1:, 0].mean():.2f} gray levels, max {d[1:, 1].max():.0f}, {d[1:, 2].mean():.2%} of pixels "
          f"differ; returns SB3 {ret_sb3:g}, workbench {ret_wb:g}")
