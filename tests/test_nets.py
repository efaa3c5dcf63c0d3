import pytest
import torch

from workbench.nets import (NetSpec, build, compression, make_spec, n_params, preset_spec, spec_for_fraction,
                            spec_params)

NATURE = NetSpec("nature_cnn", (4, 84, 84), 18, (32, 64, 64), (512,), 255.0)


@pytest.mark.parametrize("name,params", [("teacher", 1_693_362), ("net1", 427_874), ("net2", 113_346), ("net3", 61_954)])
def test_rusu_presets_have_the_published_parameter_counts(name, params):
    assert spec_params(preset_spec(name, NATURE)) == params
    assert n_params(build(preset_spec(name, NATURE))) == params


def test_tiny_preset_is_about_1_7_percent_of_the_teacher():
    share = spec_params(preset_spec("tiny", NATURE)) / spec_params(NATURE)
    assert 0.015 < share < 0.02


@pytest.mark.parametrize("obs,actions", [((4, 10, 10), 3), ((6, 10, 10), 6), ((4,), 2)])
@pytest.mark.parametrize("fraction", [0.25, 0.04, 0.017])
def test_fraction_search_hits_the_share_in_every_family(obs, actions, fraction):
    teacher = make_spec(obs, actions)
    student = spec_for_fraction(teacher, fraction)
    assert student.family == teacher.family
    assert abs(spec_params(student) / spec_params(teacher) - fraction) / fraction < 0.15


def test_width_knob_grows_parameters_and_output_shape_is_batch_by_actions():
    small, big = build(make_spec((4, 10, 10), 3, width=0.5)), build(make_spec((4, 10, 10), 3, width=2))
    assert n_params(small) < n_params(big)
    obs = torch.zeros(5, 4, 10, 10, dtype=torch.uint8)
    assert small.logits(obs).shape == (5, 3)
    assert 0 < compression(small, big) < 1


def test_value_head_is_not_counted_as_acting_parameters():
    spec = make_spec((4,), 2)
    with_v = build(NetSpec(**{**spec.__dict__, "value_head": True}))
    assert with_v.n_params == build(spec).n_params
    assert sum(p.numel() for p in with_v.parameters()) == with_v.n_params + with_v.value.weight.numel() + 1


def test_same_seed_builds_the_same_weights():
    a, b = build(make_spec((4,), 2), seed=3), build(make_spec((4,), 2), seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_greedy_act_is_argmax_and_atari_frames_are_scaled():
    net = build(NATURE, "q", seed=0)
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    assert torch.equal(net.act(obs), net.logits(obs).argmax(-1))
    # logits() runs the convs channels-last, a different kernel from this plain call: equal up to float rounding
    # (exact equality failed once in CI). A missing /255 would be off by orders of magnitude, not 1e-5.
    assert torch.allclose(net.logits(obs), net.head(net.trunk(obs.float() / 255.0)), rtol=1e-4, atol=1e-5)
    # Scaled in place only where the float copy is the net's own: frames in float are read, not changed.
    assert torch.equal(net._input(obs), obs.float() / 255.0)
    frames = obs.float().contiguous(memory_format=torch.channels_last)
    kept = frames.clone()
    assert torch.equal(net._input(frames), kept / 255.0) and torch.equal(frames, kept)


def test_bad_specs_fail_clearly():
    with pytest.raises(ValueError, match="unknown network family"):
        NetSpec("resnet", (4,), 2)
    with pytest.raises(ValueError, match="unknown student preset"):
        preset_spec("net9", NATURE)


def test_nature_cnn_channels_last_path_gives_the_nchw_numbers_and_gradients():
    # Policy feeds Atari frames to its convs channels-last (faster on a CPU); the numbers must not change.
    net = build(make_spec((4, 84, 84), 6, width=0.5, value_head=True), "pi", seed=3)
    obs_B = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    fast = net.logits(obs_B)
    plain = net.head(net.trunk(obs_B.float().contiguous() / 255.0))
    assert torch.allclose(fast, plain, atol=1e-5)
    grads = []
    for out in (fast, plain):
        net.zero_grad()
        out.logsumexp(-1).sum().backward(retain_graph=True)
        grads.append(net.trunk[0].weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-4, rtol=1e-4)
    assert net.trunk[0].weight.is_contiguous()  # weights keep their layout: checkpoints are unchanged


def test_compression_figure_draws_the_committed_table_beside_live_students():
    import pandas as pd

    from workbench import plots
    from workbench.results import DATA

    committed = pd.read_csv(DATA / "more_data_table_100ep.csv")
    live = pd.DataFrame([{"loss": "kl", "beta": "1", "student_net": "net3", "compression": 0.0366,
                          "pct_of_teacher": 100.0}])
    fig = plots.compression_figure(live, reference=committed)
    lines = [d for d in fig.data if d.legendgroup == "committed"]
    games = committed[~committed.game.str.startswith("geometric")]
    assert len(lines) == len(games) and sum(bool(d.showlegend) for d in lines) == 1
    asterix = next(d for d in lines if "minatar-asterix" in d.text)
    row = games[games.game == "minatar-asterix"].iloc[0]
    assert list(asterix.y) == [row.net3, row.tiny] and asterix.x[0] > asterix.x[1]
    assert len(plots.compression_figure(live).data) == len(fig.data) - len(lines)


def test_separate_critic_reads_the_observation_not_the_actors_features():
    """cleanrl's classic-control agent: a critic of its own. Changing the actor's trunk moves the logits and leaves
    the values; the critic is not an acting parameter, and the spec says which critic it had (omitted for 'head')."""
    import json

    spec = make_spec((6,), 3, value_head=True)
    sep = build(NetSpec(**{**json.loads(spec.to_json()), "critic": "separate"}), "pi", seed=0)
    shared = build(spec, "pi", seed=0)
    assert "critic" not in json.loads(spec.to_json()) and json.loads(sep.spec.to_json())["critic"] == "separate"
    assert NetSpec.from_dict(json.loads(sep.spec.to_json())) == sep.spec
    assert sep.n_params == shared.n_params  # the actor alone; the critic's extra trunk is training-only
    obs = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
    logits, values = sep.logits_and_value(obs)
    with torch.no_grad():
        sep.trunk[1].weight.mul_(-1.0)
    logits2, values2 = sep.logits_and_value(obs)
    assert not torch.allclose(logits, logits2) and torch.equal(values, values2)
    with torch.no_grad():
        shared.trunk[1].weight.mul_(-1.0)  # a shared trunk moves both
    assert not torch.equal(shared.logits_and_value(obs)[1], build(spec, "pi", seed=0).logits_and_value(obs)[1])
    with pytest.raises(ValueError, match="unknown critic 'own'"):
        NetSpec("mlp", (6,), 3, hidden=(8,), value_head=True, critic="own")


def test_orthogonal_init_starts_near_uniform_and_is_seeded():
    """cleanrl's and SB3's init: orthogonal, zero biases, action head at gain 0.01 so the first policy is near
    uniform everywhere, even on observations as large as Acrobot's velocities; same seed, same weights."""
    spec = NetSpec("mlp", (6,), 3, hidden=(64, 64), value_head=True, activation="tanh", critic="separate")
    obs = 20 * torch.randn(256, 6, generator=torch.Generator().manual_seed(0))
    ortho = build(spec, "pi", seed=3, init="orthogonal")
    probs = torch.softmax(ortho.logits(obs), -1)
    assert (probs - 1 / 3).abs().max() < 0.02
    assert all(torch.equal(a, b) for a, b in zip(ortho.state_dict().values(),
                                                  build(spec, "pi", seed=3, init="orthogonal").state_dict().values()))
    w = ortho.trunk[3].weight  # the 64 x 64 layer: orthogonal at gain sqrt(2)
    assert torch.allclose(w @ w.T, 2 * torch.eye(64), atol=1e-4) and not ortho.head.bias.any()
    plain = torch.softmax(build(spec, "pi", seed=3).logits(obs), -1)
    assert (plain - 1 / 3).abs().max() > 0.05  # PyTorch's default init does not start uniform there
    with pytest.raises(ValueError, match="unknown init 'xavier'"):
        build(spec, init="xavier")
