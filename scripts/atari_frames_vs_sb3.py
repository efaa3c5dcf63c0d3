"""How far the workbench's Atari frames are from those an SB3-trained teacher saw, and what that does to a policy.

1. Plays the same random actions (seed 0) in SB3's AtariWrapper on GameNoFrameskip-v4 and in the workbench's ALE env,
   no-ops off on both sides so that the episodes start alike, and prints how the 84x84 gray frames differ step by
   step (mean and max absolute difference in gray levels, share of pixels that differ) and both returns.
2. Finds where the difference comes from: both envs' frames against frames made from a raw ALE emulator (max of the
   last two gray frames, cv2 INTER_AREA to 84x84) after each candidate start of a game: pressing FIRE for one frame
   (ale-py's fire reset) or FIRE for one agent step then action 2 for one (SB3's FireResetEnv).
3. With --teachers, plays each shipped (workbench-trained) Atari teacher greedily on SB3's frames for --episodes
   episodes and prints that beside its card (the workbench's frames): a trained policy moved between the two
   conventions, the same move an imported SB3 teacher makes the other way.

Usage: python scripts/atari_frames_vs_sb3.py [Breakout Pong ...] [--teachers atari-pong atari-breakout] [--episodes 10]
"""

import argparse

import ale_py
import cv2
import gymnasium as gym
import numpy as np
from stable_baselines3.common.atari_wrappers import AtariWrapper

from workbench.distill.engine import load_teacher
from workbench.envs import make_env
from workbench.imports import play_library_env

gym.register_envs(ale_py)
p = argparse.ArgumentParser()
p.add_argument("games", nargs="*", default=["Breakout", "Pong"])
p.add_argument("--teachers", nargs="*", default=[])
p.add_argument("--episodes", type=int, default=10)
args = p.parse_args()
for game in args.games:
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



def emulated(game: str, start: list, actions: list) -> list:
    """Frames of a raw ALE emulator: ``start`` = [(action index, frames)], then 4 frames per action."""
    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(ale_py.roms.get_rom_path(game.lower()))
    ale.reset_game()
    acts = ale.getMinimalActionSet()
    for a, n in start:
        for _ in range(n):
            ale.act(acts[a])
    out = []
    for a in actions:
        frames = []
        for _ in range(4):
            ale.act(acts[a])
            frames.append(ale.getScreenGrayscale())
        out.append(cv2.resize(np.maximum(frames[-2], frames[-1]), (84, 84), interpolation=cv2.INTER_AREA))
    return out


for game in args.games:
    actions = [int(x) for x in np.random.default_rng(1).integers(0, 4, 40)]
    ours, _ = make_env(f"ALE/{game}-v5", 1, 0, noop_max=0)
    ours.reset(seed=0)
    wb = [ours.step(np.array([a]))[0][0, -1] for a in actions]
    theirs = AtariWrapper(gym.make(f"{game}NoFrameskip-v4"), noop_max=0, terminal_on_life_loss=False,
                          clip_reward=False)
    theirs.reset(seed=0)
    sb3 = [theirs.step(a)[0][:, :, 0] for a in actions]
    for what, start in (("FIRE for 1 frame", [(1, 1)]), ("FIRE for 4 frames, action 2 for 4", [(1, 4), (2, 4)])):
        ref = emulated(game, start, actions)
        gap = [float(np.mean([np.abs(x.astype(int) - y).mean() for x, y in zip(xs, ref)])) for xs in (wb, sb3)]
        print(f"{game}, emulator started with {what}: mean |diff| workbench {gap[0]:.3f}, SB3 {gap[1]:.3f}")

for name in args.teachers:
    teacher, card, spec = load_teacher(name)
    theirs, stalled = play_library_env(lambda obs: int(teacher.act(obs[None])[0]), spec, args.episodes,
                                       card["eval_seed"])
    print(f"{name}: workbench frames {card['return_mean']:.1f} +- {card['return_std']:.1f} ({card['return_n']} "
          f"episodes, its card); SB3's frames {np.mean(theirs):.1f} +- {np.std(theirs):.1f} ({args.episodes} "
          f"episodes, {stalled} stalled): {[round(r) for r in theirs]}", flush=True)
