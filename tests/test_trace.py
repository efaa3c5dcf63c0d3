"""Traces, the ALE single-env path, branch views, saliency, video and the frame-by-frame figures."""

import numpy as np
import pytest

from workbench import plots
from workbench.distill.engine import load_teacher
from workbench.envs import make_env
from workbench.nets import build, make_spec, preset_spec
from workbench.runs import CheckpointError
from workbench.trace import SingleEnv, Trace, branch, confusion, record_trace, saliency


@pytest.fixture(scope="module")
def breakout():
    teacher, _, spec = load_teacher("minatar-breakout")
    student = build(preset_spec("tiny", teacher.spec), "pi", seed=0)  # untrained: disagrees often
    return teacher, student, spec


@pytest.fixture(scope="module")
def trace(breakout):
    teacher, student, spec = breakout
    return record_trace(teacher, student, spec, driver="teacher", seed=3, max_steps=120)


def test_trace_evaluates_both_networks_on_every_frame(breakout, trace):
    teacher, student, _ = breakout
    T = trace.length
    assert T > 10 and trace.obs.shape == (T, 4, 10, 10) and trace.screens.shape[1:] == (160, 160, 3)
    np.testing.assert_allclose(trace.teacher_out, teacher.logits(trace.obs).detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(trace.student_out, student.logits(trace.obs).detach().numpy(), rtol=1e-5, atol=1e-5)
    assert (trace.actions == trace.teacher_actions).all()  # the teacher drove, greedily
    np.testing.assert_allclose(trace.teacher_probs.sum(-1), 1.0, rtol=1e-5)
    assert trace.summary()["disagreements"] == len(trace.disagreements) > 0
    d = trace.disagreements
    assert trace.next_disagreement(int(d[0])) == (int(d[1]) if len(d) > 1 else int(d[0]))
    assert trace.next_disagreement(int(d[-1])) == int(d[0])  # wraps round


def test_trace_saves_and_loads_without_pickle(trace, tmp_path):
    path = trace.save(tmp_path / "t.safetensors")
    back = Trace.load(path)
    for k in ("obs", "screens", "teacher_out", "student_out", "actions", "rewards"):
        np.testing.assert_array_equal(getattr(back, k), getattr(trace, k))
    assert back.action_names == trace.action_names and back.summary() == trace.summary()
    (tmp_path / "bad.safetensors").write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a readable trace"):
        Trace.load(tmp_path / "bad.safetensors")


def test_student_driven_trace_follows_the_student(breakout):
    teacher, student, spec = breakout
    tr = record_trace(teacher, student, spec, driver="student", seed=0, max_steps=50)
    assert (tr.actions == tr.student_actions).all()


def test_mismatched_action_count_is_refused(breakout):
    teacher, _, spec = breakout
    wrong = build(make_spec(spec.obs_shape, 6), "pi", seed=0)
    with pytest.raises(ValueError, match=r"student is a network .* with 6 actions, but MinAtar/Breakout-v1 .* with 3"):
        record_trace(teacher, wrong, spec)


def test_branch_replays_the_trace_from_its_snapshot(breakout, trace):
    teacher, student, _ = breakout
    t = 5
    result = branch(trace, t, teacher, student, steps=10)
    n = len(result["teacher"]["actions"])
    # The teacher drove the trace greedily, so its branch from frame t repeats the trace exactly.
    np.testing.assert_array_equal(result["teacher"]["actions"], trace.actions[t:t + n])
    np.testing.assert_array_equal(result["teacher"]["obs"][0], trace.obs[t])
    assert result["part"] is None or 0 <= result["part"] < 10
    fig = plots.branch_figure(result, trace.action_names)
    assert sum(d.type == "image" for d in fig.data) >= 2


def test_saliency_finds_what_the_policy_looks_at(breakout, trace):
    teacher, _, _ = breakout
    s = saliency(teacher, trace.obs[10])
    assert s.shape == (10, 10) and s.max() == pytest.approx(1.0) and s.min() >= 0
    # Blurring where the only object is matters more than blurring an empty corner far from it.
    obs = np.zeros((4, 10, 10), np.uint8)
    obs[0, 9, 4] = 1  # only a paddle, bottom row
    s0 = saliency(teacher, obs)
    assert s0[9, 4] > s0[0, 0]


def test_confusion_counts_pairs():
    m = confusion(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_episode_figure_shows_frame_t(trace):
    fig = plots.episode_figure(trace, 3)
    bars = [d for d in fig.data if d.type == "bar" and d.name in ("teacher", "student")]
    assert [list(b.x) for b in bars] == [trace.action_names] * 2
    np.testing.assert_allclose(bars[0].y, trace.teacher_probs[3])
    np.testing.assert_allclose(bars[1].y, trace.student_probs[3])
    assert sum(d.type == "image" for d in fig.data) == 2
    assert any(s.x0 == s.x1 == 3 for s in fig.layout.shapes)  # the frame marker on the timeline


def test_player_images_follow_the_slider(breakout, trace):
    from workbench.widgets import EpisodePlayer

    teacher, student, _ = breakout
    player = EpisodePlayer(trace, teacher, student)
    first = (player.screen.value, player.bars.value, player.timeline.value)
    d = trace.disagreements
    assert player.jump_to_disagreement() == int(d[0] if d[0] > 0 else d[1])
    assert player.t == player.slider.value != 0
    now = (player.screen.value, player.bars.value, player.timeline.value)
    assert now[1] != first[1] and now[2] != first[2]  # the bars show the new frame, the cursor moved
    assert "disagree" in player.info.value


def test_video_export_writes_every_frame(trace, tmp_path):
    import imageio.v3 as iio

    from workbench.video import export_video

    path = export_video(trace, tmp_path / "ep.gif", fps=20)
    frames = iio.imread(path)
    assert frames.shape[0] == trace.length and frames.shape[-1] == 3
    with pytest.raises(ValueError, match="gif or .mp4"):
        export_video(trace, tmp_path / "ep.avi")


@pytest.mark.parametrize("game", ["pong", "breakout"])
def test_ale_single_env_matches_the_native_vector_env(game):
    """The trace path (ALEInterface + our preprocessing, with snapshots) sees the frames the teacher trained on."""
    env_id = f"ALE/{game.capitalize()}-v5"
    venv, spec = make_env(env_id, 1, seed=5, noop_max=0)
    single = SingleEnv(spec, seed=5)
    v_obs, _ = venv.reset(seed=5)
    s_obs = single.reset()
    np.testing.assert_array_equal(v_obs[0], s_obs)
    rng = np.random.default_rng(0)
    for t in range(150):
        a = int(rng.integers(spec.n_actions))
        v_obs, v_r, v_term, v_trunc, _ = venv.step(np.array([a]))
        s_obs, s_r, s_done = single.step(a)
        if v_term[0] or v_trunc[0]:
            break
        np.testing.assert_array_equal(v_obs[0], s_obs, err_msg=f"frame {t} differs")
        assert v_r[0] == s_r
    venv.close()


def test_ale_snapshots_restore_the_emulator():
    _, spec = make_env("ALE/Pong-v5", 1, seed=0)
    env = SingleEnv(spec, seed=0)
    env.reset()
    for _ in range(20):
        env.step(1)
    snap = env.snapshot()
    first = [env.step(a)[0] for a in (2, 3, 2, 2, 3)]
    env.restore(snap)
    again = [env.step(a)[0] for a in (2, 3, 2, 2, 3)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
