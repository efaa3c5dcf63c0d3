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


def kl(s_BA: torch.Tensor, t_BA: torch.Tensor, tau: float = 0.01) -> torch.Tensor:
    """KL(softmax(t / tau) || softmax(s)). tau sharpens the teacher only (Rusu: tau = 0.01 for DQN Q-values)."""
    check_actions(s_BA.shape[-1], t_BA.shape[-1])
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    log_p_BA = F.log_softmax(t_BA / tau, -1)
    log_q_BA = F.log_softmax(s_BA, -1)
    return (log_p_BA.exp() * (log_p_BA - log_q_BA)).sum(-1).mean()


LOSSES = ("nll", "mse", "kl")


def get_loss(name: str, tau: float = 0.01):
    """The loss function ``(s_BA, t_BA) -> scalar`` by name."""
    if name == "nll":
        return nll
    if name == "mse":
        return mse
    if name == "kl":
        return lambda s, t: kl(s, t, tau)
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
