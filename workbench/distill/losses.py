"""The three classic distillation losses of Rusu et al. (2016), as pure functions.

Each takes the student's logits ``s_BA`` and the teacher's outputs ``t_BA`` (Q-values for a DQN teacher,
logits for PPO) and returns a scalar: a per-state loss summed over actions, then a mean over the batch
(a sum over the batch would silently scale the learning rate with the batch size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_actions(n_student: int, n_teacher: int) -> None:
    if n_student != n_teacher:
        raise ValueError(
            f"the student has {n_student} actions but the teacher has {n_teacher}: a student must output one "
            "logit per teacher action. Build it for the teacher's env (e.g. --preset-net, or n_actions of the "
            "teacher's card)."
        )


def nll(s_BA: torch.Tensor, t_BA: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the teacher's greedy action under the student (Rusu: 'NLL')."""
    check_actions(s_BA.shape[-1], t_BA.shape[-1])
    return F.cross_entropy(s_BA, t_BA.argmax(-1))


def mse(s_BA: torch.Tensor, t_BA: torch.Tensor) -> torch.Tensor:
    """Squared error between student outputs and the teacher's Q-values/logits, summed over actions."""
    check_actions(s_BA.shape[-1], t_BA.shape[-1])
    return ((s_BA - t_BA) ** 2).sum(-1).mean()


def kl_per_state(s_BA: torch.Tensor, t_BA: torch.Tensor, tau: float = 0.01) -> torch.Tensor:
    """[B]: KL(softmax(t / tau) || softmax(s)) of each state."""
    check_actions(s_BA.shape[-1], t_BA.shape[-1])
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    log_p_BA = F.log_softmax(t_BA / tau, -1)
    log_q_BA = F.log_softmax(s_BA, -1)
    return (log_p_BA.exp() * (log_p_BA - log_q_BA)).sum(-1)


def kl(s_BA: torch.Tensor, t_BA: torch.Tensor, tau: float = 0.01) -> torch.Tensor:
    """KL(softmax(t / tau) || softmax(s)). tau sharpens the teacher only (Rusu: tau = 0.01 for DQN Q-values)."""
    return kl_per_state(s_BA, t_BA, tau).mean()


def ppd(s_BA: torch.Tensor, t_BA: torch.Tensor, ratio_B: torch.Tensor, clip: float, tau: float = 1.0) -> torch.Tensor:
    """Proximal policy distillation's teacher term (Spigler 2024): each state's KL(teacher || student) weighted by
    max(ratio, 1 - clip), where ratio is pi_student(a|s) / pi_rollout(a|s) of the action taken. Like PPO's clip,
    the weight stops falling once the student has moved that far from the policy that collected the state; it keeps
    its gradient (the reference code's ``clamp(ratio, 1 - clip_range, None)``)."""
    return (ratio_B.clamp(min=1.0 - clip) * kl_per_state(s_BA, t_BA, tau)).mean()


LOSSES = ("nll", "mse", "kl", "ppd")


def get_loss(name: str, tau: float = 0.01):
    """The loss function ``(s_BA, t_BA) -> scalar`` by name."""
    if name == "nll":
        return nll
    if name == "mse":
        return mse
    if name in ("kl", "ppd"):  # ppd's own term needs the rollout's ratios (distill.proximal); measured as KL
        return lambda s, t: kl(s, t, tau)
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
