"""Proximal policy distillation (Spigler 2024, "Proximal Policy Distillation", TMLR 2025): the student is a PPO
learner on its own rollouts, and its loss adds the teacher.

Student-driven collection (beta 0) with the PPO loss on the env's rewards plus a term towards the teacher:
each rollout state's KL(teacher || student), weighted by max(ratio, 1 - clip) where ratio is the probability of
the action taken under the student now over under the student that collected it (``losses.ppd``; the reference
code, sb3_distill's ``ProximalPolicyDistillation``, writes ``clamp(ratio, 1 - clip_range, None) * kl``). The reward
term lets the student improve where the teacher is weak; the KL term keeps it near the teacher everywhere it goes.

The student carries a critic head on its trunk for the advantages (``NetSpec.value_head``; not counted as acting
parameters, as for any PPO policy). The rest is the engine's: the teacher (``load_teacher``, its temperature), the
student's run, schedule, log, checkpoint and card (``loop.StudentRun``), ``agents.ppo.gae`` for the advantages.
A resumed run restarts its envs on a seed derived from where it stopped, as PPO does.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..agents.common import progress, resume_seed, seed_everything
from ..agents.ppo import gae
from ..envs import make_env
from ..hardware import resolve_device, to_device
from .engine import load_teacher, teacher_states
from .losses import ppd

MAX_GRAD_NORM = 0.5  # SB3's and cleanrl's PPO default


def distill_proximal(config, out: str | Path, resume: bool = False, progress_bar: bool = True,
                     callback=None) -> dict:
    """Distil ``config.teacher`` into a student by PPD (``config.loss == 'ppd'``); writes ``out``, returns the card."""
    from .loop import StudentRun

    seed_everything(config.seed)
    device = resolve_device(config.device)
    teacher, teacher_card, env = load_teacher(config.teacher)
    teacher.eval().to(device)
    rng = np.random.default_rng(config.seed)  # the minibatches
    s = StudentRun(config, out, teacher, teacher_card, env, device, resume, rng=rng)
    c, student, optimizer = s.config, s.student, s.optimizer
    held = teacher_states(teacher, env, c.heldout_size, c.seed + 777_777, c.teacher_epsilon)
    step = s.restore() if resume else 0
    envs, _ = make_env(env.env_id, c.n_envs, c.seed, **env.settings)
    obs, _ = envs.reset(seed=resume_seed(c.seed, step))
    T, B = c.ppd_rollout, c.n_envs
    obs_TB = np.zeros((T, B) + env.obs_shape, dtype=env.obs_dtype)
    act_TB = np.zeros((T, B), dtype=np.int64)
    logp_TB, val_TB, rew_TB, done_TB = (np.zeros((T, B), dtype=np.float32) for _ in range(4))
    teacher_TBA = np.zeros((T, B, env.n_actions), dtype=np.float32)
    clip_rewards = bool(env.settings.get("reward_clipping"))
    s.start(time.perf_counter())
    bar = progress(c.total_steps, step, f"distill ppd -> {s.spec.family}", progress_bar)
    while not s.due(step, c.total_steps):
        # -- a rollout: the student acts by sampling its policy; the teacher labels every state once ---------------
        student.eval()
        with torch.no_grad():
            for t in range(T):
                logits_BA, value_B = student.logits_and_value(obs)
                dist = torch.distributions.Categorical(logits=logits_BA)
                action_B = dist.sample()
                obs_TB[t], act_TB[t] = obs, action_B.cpu().numpy()
                logp_TB[t], val_TB[t] = dist.log_prob(action_B).cpu().numpy(), value_B.cpu().numpy()
                teacher_TBA[t] = teacher.logits(obs).cpu().numpy()
                obs, reward, term, trunc, info = envs.step(act_TB[t])
                reward = np.sign(reward) if clip_rewards else reward.astype(np.float32)
                for i in np.flatnonzero(trunc & ~term):  # a time limit is not a terminal state: bootstrap it
                    reward[i] += c.ppd_gamma * student.logits_and_value(info["final_obs"][i][None])[1].item()
                rew_TB[t], done_TB[t] = reward, term | trunc
            next_value = student.logits_and_value(obs)[1].cpu().numpy()
        step += T * B
        s.queries += T * B
        bar.update(T * B)
        adv_TB, ret_TB = gae(rew_TB, val_TB, done_TB, next_value, c.ppd_gamma, c.ppd_gae_lambda)

        # -- PPO epochs over the rollout, with the teacher's clipped KL term --------------------------------------
        student.train()
        n = T * B
        b_obs = to_device(obs_TB.reshape((n,) + env.obs_shape), device)
        b_act, b_logp, b_adv, b_ret = (to_device(a.reshape(-1), device) for a in (act_TB, logp_TB, adv_TB, ret_TB))
        b_teacher = to_device(teacher_TBA.reshape(n, -1), device)
        minibatch = min(c.batch_size, n)
        for _epoch in range(c.ppd_epochs):
            order = rng.permutation(n)
            for start in range(0, n - minibatch + 1, minibatch):
                mb = torch.as_tensor(order[start:start + minibatch], device=device)
                logits_BA, value_B = student.logits_and_value(b_obs[mb])
                dist = torch.distributions.Categorical(logits=logits_BA)
                ratio = (dist.log_prob(b_act[mb]) - b_logp[mb]).exp()
                adv = b_adv[mb]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - c.ppd_clip, 1 + c.ppd_clip)).mean()
                v_loss = ((value_B - b_ret[mb]) ** 2).mean()
                distill = ppd(logits_BA, b_teacher[mb], ratio, c.ppd_clip, c.tau)
                loss = (pg_loss + c.ppd_vf_coef * v_loss - c.ppd_ent_coef * dist.entropy().mean()
                        + c.ppd_lambda * distill)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(student.parameters(), MAX_GRAD_NORM)
                optimizer.step()
                s.losses.append(distill.item())
                s.updates += 1
        student.eval()
        s.step = step
        done = step >= c.total_steps
        row = s.log(held, 0.0, done, callback)
        if row:
            bar.set_postfix(kl=f"{row['losses/distill'] or 0:.3f}", agree=f"{row['heldout/agreement']:.2f}")
        done = s.due(step, c.total_steps)
        s.checkpoint(done)
    bar.close()
    envs.close()
    return s.finish(held)
