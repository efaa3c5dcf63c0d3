import pytest
import torch

from workbench.distill.losses import get_loss, kl

T = torch.tensor([[1.0, 2.0, 0.5], [0.2, -1.0, 3.0], [0.0, 0.1, 0.05]])


@pytest.mark.parametrize("tau", [0.01, 1.0, 5.0])
def test_kl_of_a_distribution_with_itself_is_zero(tau):
    assert kl(T / tau * 1.0, T, tau).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", ["nll", "mse", "kl"])
def test_each_loss_is_minimised_by_the_teachers_own_outputs(name):
    loss = get_loss(name, tau=1.0)
    # NLL's target is the teacher's argmax, so its minimiser is a student sure of that action.
    best = 20.0 * torch.nn.functional.one_hot(T.argmax(-1), 3).float() if name == "nll" else T.clone()
    at_teacher = loss(best, T).item()
    for seed in range(5):
        other = T + torch.randn(T.shape, generator=torch.Generator().manual_seed(seed))
        assert loss(other, T).item() >= at_teacher - 1e-6
    if name != "nll":
        assert at_teacher == pytest.approx(0.0, abs=1e-6)


def test_tau_sharpens_the_teacher_only():
    s = torch.zeros(1, 3)
    # A sharp teacher puts its mass on action 1: KL to a uniform student approaches log 3.
    assert kl(s, T[:1], 0.01).item() == pytest.approx(torch.log(torch.tensor(3.0)).item(), abs=1e-3)
    assert kl(s, T[:1], 100.0).item() < 1e-3


@pytest.mark.parametrize("name", ["nll", "mse", "kl"])
def test_gradients_reach_the_student(name):
    student = torch.nn.Linear(4, 3)
    loss = get_loss(name)(student(torch.randn(8, 4)), torch.randn(8, 3))
    loss.backward()
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["nll", "mse", "kl"])
def test_reduction_is_a_batch_mean(name):
    loss = get_loss(name, tau=1.0)
    s = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    assert loss(s.repeat(5, 1), T[:1].repeat(20, 1)).item() == pytest.approx(loss(s, T[:1].repeat(4, 1)).item(), rel=1e-5)


@pytest.mark.parametrize("name", ["nll", "mse", "kl"])
def test_a_different_action_count_fails_clearly(name):
    with pytest.raises(ValueError, match="student has 4 actions but the teacher has 3"):
        get_loss(name)(torch.zeros(2, 4), T[:2])
