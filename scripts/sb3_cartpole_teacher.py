"""Train the CartPole-v1 teacher of the bring-your-own-teacher benchmark with Stable-Baselines3, as RL Zoo does.

RL Zoo's tuned hyperparameters for PPO on CartPole-v1 (hyperparams/ppo.yml): 8 envs, n_steps 32, batch 256,
gae_lambda 0.8, gamma 0.98, 20 epochs, ent_coef 0, learning rate and clip range annealed linearly from 1e-3 and
0.2 over 1e5 steps, default MlpPolicy. Stopped at the first evaluation (every 4,096 env steps, 20 deterministic
episodes) whose mean reaches 475. Usage: python scripts/sb3_cartpole_teacher.py OUT.zip [SEED]
"""

import sys
import time

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env


def linear(start):
    return lambda progress: progress * start  # SB3 passes the remaining progress, 1 -> 0


def main(out: str, seed: int = 0) -> None:
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                learning_rate=linear(1e-3), clip_range=linear(0.2), seed=seed, verbose=0)
    stop = StopTrainingOnRewardThreshold(reward_threshold=475, verbose=0)
    evaluator = EvalCallback(make_vec_env("CartPole-v1", n_envs=1, seed=seed + 1000), eval_freq=4096 // 8,
                             n_eval_episodes=20, deterministic=True, callback_on_new_best=stop, verbose=0)
    t0 = time.time()
    model.learn(100_000, callback=evaluator)
    model.save(out)
    print(f"{out}: {model.num_timesteps} env steps, {time.time() - t0:.1f} s, last evaluation "
          f"{evaluator.last_mean_reward:.1f} over 20 episodes")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
