import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from workbench.nets import build, make_spec
from workbench.runs import CheckpointError, Run, atomic_write_json, load_policy, save_policy


def test_policy_round_trip_rebuilds_the_network_from_the_file(tmp_path):
    policy = build(make_spec((4, 10, 10), 3, width=0.5), "q", seed=1)
    save_policy(tmp_path / "model.safetensors", policy, env_id="MinAtar/Breakout-v1")
    loaded = load_policy(tmp_path)
    obs = torch.randint(0, 2, (4, 4, 10, 10), dtype=torch.uint8)
    assert loaded.kind == "q" and loaded.spec == policy.spec
    assert torch.equal(loaded.logits(obs), policy.logits(obs))


def test_a_pickle_is_refused_without_being_unpickled(tmp_path):
    path = tmp_path / "model.safetensors"

    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    path.write_bytes(pickle.dumps({"x": Boom()}))
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_policy(path)
    assert not (tmp_path / "pwned").exists()
    torch.save(build(make_spec((4,), 2)).state_dict(), path)
    with pytest.raises(CheckpointError, match="pickle or a torch.save"):
        load_policy(path)


def test_a_truncated_file_fails_clearly(tmp_path):
    path = tmp_path / "model.safetensors"
    save_policy(path, build(make_spec((4,), 2)))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_policy(path)


def test_a_foreign_safetensors_file_fails_clearly(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(path))
    with pytest.raises(CheckpointError, match="not a workbench policy"):
        load_policy(path)


def test_a_checkpoint_for_another_architecture_fails_clearly(tmp_path):
    path = tmp_path / "model.safetensors"
    save_policy(path, build(make_spec((4,), 2)))
    with pytest.raises(CheckpointError, match="expected a minatar_cnn net"):
        load_policy(path, expect=make_spec((4, 10, 10), 3))
    # Weights whose shapes contradict the header.
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        meta = f.metadata()
    arrays = {k: v for k, v in __import__("safetensors.numpy").numpy.load_file(str(path)).items()}
    arrays["head.weight"] = np.zeros((7, 256), np.float32)
    save_file(arrays, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="do not fit the network"):
        load_policy(path)


def test_atomic_write_leaves_the_old_file_when_serialising_fails(tmp_path):
    path = tmp_path / "card.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]


def test_metrics_of_a_resumed_segment_are_appended_never_lost(tmp_path):
    run = Run(tmp_path)
    for s in (10, 20, 30):
        run.log(s, loss=float(s))
    resumed = Run(tmp_path)
    assert resumed.segment == 1
    resumed.log(30, loss=-1.0)
    rows = resumed.read_metrics_rows()
    assert [r["step"] for r in rows] == [10, 20, 30, 30]
    df = resumed.metrics()
    assert df.loc[df.step == 30, "loss"].item() == -1.0 and len(df) == 3
