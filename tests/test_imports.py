"""Teachers from Stable-Baselines3, cleanrl and plain torch modules: the same outputs as the library's own network,
read without unpickling anything, as ordinary teacher run folders."""

import io
import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch
from torch import nn

from workbench.distill.engine import load_teacher
from workbench.imports import (ForeignModelError, ImportConfig, env_observations, import_module, import_teacher,
                               read_cleanrl, read_sb3)
from workbench.cli import main
from workbench.envs import make_env

sb3 = pytest.importorskip("stable_baselines3")


def _obs(env_id, n=64):
    _, spec = make_env(env_id, 1, 0)
    return env_observations(spec, n)


@torch.no_grad()
def _sb3_outputs(model, obs):
    """What SB3's own policy computes: action probabilities (actor-critic) or Q-values (DQN)."""
    t, _ = model.policy.obs_to_tensor(obs)
    if hasattr(model.policy, "q_net"):
        return model.policy.q_net(t)
    return model.policy.get_distribution(t).distribution.probs


def _ours(folder, obs, kind):
    teacher, card, _ = load_teacher(str(folder))
    out = teacher.logits(obs)
    return out if kind == "q" else torch.softmax(out, -1), card


@pytest.mark.parametrize("algo, env_id, kwargs", [
    ("PPO", "CartPole-v1", {"n_steps": 64, "batch_size": 64}),
    ("A2C", "Acrobot-v1", {"policy_kwargs": {"net_arch": [32], "activation_fn": nn.ReLU}}),
    ("DQN", "CartPole-v1", {"learning_starts": 32, "policy_kwargs": {"net_arch": [48, 24]}}),
])
def test_an_sb3_mlp_model_gives_sb3s_outputs_and_its_return(tmp_path, algo, env_id, kwargs):
    model = getattr(sb3, algo)("MlpPolicy", env_id, seed=0, **kwargs)
    model.learn(128)
    model.save(tmp_path / "model.zip")
    card = import_teacher(ImportConfig(origin="sb3", path=str(tmp_path / "model.zip"), env_id=env_id,
                                       eval_episodes=4), tmp_path / "teacher")
    obs = _obs(env_id)
    ours, saved = _ours(tmp_path / "teacher", obs, card["kind"])
    assert torch.allclose(ours, _sb3_outputs(model, obs).float(), atol=1e-5)
    assert card["kind"] == ("q" if algo == "DQN" else "pi") and card["algo"] == algo.lower()
    assert card["origin"]["library"] == "stable-baselines3" and len(card["origin"]["sha256"]) == 64
    # Same env, same seeds, the same greedy actions: SB3 playing it scores what the workbench does.
    assert card["library_return"]["returns"] == card["returns"] and card["library_return_difference"] == 0


@pytest.mark.parametrize("algo", ["PPO", "DQN"])
def test_an_sb3_atari_cnn_model_reads_the_workbench_frames_as_sb3_does(tmp_path, algo):
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", n_envs=1, seed=0), 4)
    extra = {"buffer_size": 100} if algo == "DQN" else {}
    model = getattr(sb3, algo)("CnnPolicy", env, seed=0, **extra)
    model.save(tmp_path / "model.zip")
    foreign = read_sb3(tmp_path / "model.zip")
    assert foreign.obs_shape == (4, 84, 84) and foreign.obs_scale == 255.0 and len(foreign.convs) == 3
    obs = _obs("ALE/Breakout-v5", 16)
    kind = "q" if algo == "DQN" else "pi"
    ours = foreign.policy().logits(obs)
    ours = ours if kind == "q" else torch.softmax(ours, -1)
    assert torch.allclose(ours, _sb3_outputs(model, obs).float(), atol=1e-5)


@pytest.mark.parametrize("origin", ["sb3", "cleanrl"])
def test_an_atari_teacher_plays_its_own_librarys_games_and_scores_what_its_library_reports(tmp_path, origin):
    """Imported under its library's conventions (the default), the teacher's workbench return is its library's
    return on the same seeds, episode for episode; under ale-py's the card says why the two differ."""
    if origin == "sb3":
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        import ale_py
        import gymnasium as gym

        gym.register_envs(ale_py)
        sb3.PPO("CnnPolicy", VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", n_envs=1, seed=0), 4),
                seed=0).save(tmp_path / "model.zip")
        config = dict(origin="sb3", path=str(tmp_path / "model.zip"))
    else:
        torch.manual_seed(1)
        torch.save(CleanrlPPOAtari(4).state_dict(), tmp_path / "ppo_atari.cleanrl_model")
        config = dict(origin="cleanrl", path=str(tmp_path / "ppo_atari.cleanrl_model"), arch="ppo_atari")
    card = import_teacher(ImportConfig(env_id="ALE/Breakout-v5", eval_episodes=2, **config), tmp_path / "own")
    assert card["env_settings"]["conventions"] == origin
    assert card["library_return"]["returns"] == card["returns"] and card["library_return_difference"] == 0
    assert "differs_because" not in card["library_return"]
    other = import_teacher(ImportConfig(env_id="ALE/Breakout-v5", eval_episodes=1, conventions="ale-py", **config),
                           tmp_path / "ale")
    assert "conventions" not in other["env_settings"]
    assert "conventions='ale-py'" in other["library_return"]["differs_because"]


class Marker:
    """Unpickling this writes a file: the proof that a loader ran code from the model file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_model_file_that_would_run_code_is_refused_and_nothing_runs_or_is_written(tmp_path):
    marker = tmp_path / "unpickled"
    evil = io.BytesIO()
    torch.save({"action_net.weight": torch.zeros(2, 4), "payload": Marker(marker)}, evil)
    with zipfile.ZipFile(tmp_path / "model.zip", "w") as z:
        z.writestr("data", json.dumps({"observation_space": {":type:": "<class 'gymnasium.spaces.box.Box'>",
                                                             "_shape": "[4]"},
                                       "action_space": {":type:": "<class 'gymnasium.spaces.discrete.Discrete'>",
                                                        "n": "2"}}))
        z.writestr("policy.pth", evil.getvalue())
    torch.save({"network.0.weight": torch.zeros(120, 4), "payload": Marker(marker)}, tmp_path / "evil.cleanrl_model")
    for origin, path, arch in (("sb3", "model.zip", None), ("cleanrl", "evil.cleanrl_model", "dqn")):
        out = subprocess.run([sys.executable, "-m", "workbench", "import-teacher", "--from", origin,
                              str(tmp_path / path), "--env", "CartPole-v1", "--out", str(tmp_path / "t"),
                              *(["--arch", arch] if arch else [])], capture_output=True, text=True)
        assert out.returncode == 2
        assert "pickled Python objects" in out.stderr and "never unpickles" in out.stderr
    assert not marker.exists() and not (tmp_path / "t").exists()
    with pytest.raises(ForeignModelError, match="not a Stable-Baselines3 model"):
        read_sb3(tmp_path / "evil.cleanrl_model")


class CleanrlDQN(nn.Module):  # cleanrl/dqn.py QNetwork
    def __init__(self, n_obs, n):
        super().__init__()
        self.network = nn.Sequential(nn.Linear(n_obs, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                                     nn.Linear(84, n))

    def forward(self, x):
        return self.network(x)


class CleanrlPPO(nn.Module):  # cleanrl/ppo.py Agent (critic first, as there)
    def __init__(self, n_obs, n):
        super().__init__()
        self.critic = nn.Sequential(nn.Linear(n_obs, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
        self.actor = nn.Sequential(nn.Linear(n_obs, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, n))

    def forward(self, x):
        return self.actor(x)


def _nature():
    return [nn.Conv2d(4, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(), nn.Conv2d(64, 64, 3, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(3136, 512), nn.ReLU()]


class CleanrlDQNAtari(nn.Module):  # cleanrl/dqn_atari.py QNetwork
    def __init__(self, n):
        super().__init__()
        self.network = nn.Sequential(*_nature(), nn.Linear(512, n))

    def forward(self, x):
        return self.network(x / 255.0)


class CleanrlPPOAtari(nn.Module):  # cleanrl/ppo_atari.py Agent
    def __init__(self, n):
        super().__init__()
        self.network = nn.Sequential(*_nature())
        self.actor, self.critic = nn.Linear(512, n), nn.Linear(512, 1)

    def forward(self, x):
        return self.actor(self.network(x / 255.0))


@pytest.mark.parametrize("arch, env_id", [("dqn", "CartPole-v1"), ("ppo", "Acrobot-v1"),
                                          ("dqn_atari", "ALE/Breakout-v5"), ("ppo_atari", "ALE/Breakout-v5")])
def test_a_cleanrl_checkpoint_gives_the_scripts_network_outputs(tmp_path, arch, env_id):
    _, spec = make_env(env_id, 1, 0)
    torch.manual_seed(0)
    net = {"dqn": lambda: CleanrlDQN(4, 2), "ppo": lambda: CleanrlPPO(6, 3),
           "dqn_atari": lambda: CleanrlDQNAtari(4), "ppo_atari": lambda: CleanrlPPOAtari(4)}[arch]()
    torch.save(net.state_dict(), tmp_path / f"{arch}.cleanrl_model")
    obs = _obs(env_id, 16)
    policy = read_cleanrl(tmp_path / f"{arch}.cleanrl_model", arch).policy()
    with torch.no_grad():
        assert torch.allclose(policy.logits(obs), net(torch.as_tensor(obs).float()), atol=1e-5)
    if spec.family == "classic":
        card = import_teacher(ImportConfig(origin="cleanrl", path=str(tmp_path / f"{arch}.cleanrl_model"),
                                           arch=arch, env_id=env_id, eval_episodes=3), tmp_path / "teacher")
        assert card["library_return"]["returns"] == card["returns"]
        assert card["kind"] == ("q" if arch == "dqn" else "pi")
    with pytest.raises(ForeignModelError, match="not cleanrl's"):
        read_cleanrl(tmp_path / f"{arch}.cleanrl_model", "ppo" if arch == "dqn" else "dqn")


def test_any_torch_module_becomes_a_teacher_and_a_module_that_is_not_a_chain_is_refused(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 2))
    card = import_module(net, "pi", "CartPole-v1", tmp_path / "teacher", eval_episodes=2)
    obs = _obs("CartPole-v1")
    teacher, _, _ = load_teacher(str(tmp_path / "teacher"))
    with torch.no_grad():
        assert torch.allclose(teacher.logits(obs), net(torch.as_tensor(obs)), atol=1e-6)
    assert card["net"]["activation"] == "tanh" and card["library_return"] is None

    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)) + x)

    with pytest.raises(ForeignModelError, match="does more than a chain"):
        import_module(Skip(), "pi", "CartPole-v1", tmp_path / "skip")
    assert not (tmp_path / "skip").exists()


def test_a_model_for_another_env_is_refused_by_name_before_anything_is_written(tmp_path):
    torch.save(CleanrlDQN(4, 2).state_dict(), tmp_path / "dqn.cleanrl_model")
    with pytest.raises(ForeignModelError, match="Acrobot-v1 in the workbench gives"):
        import_teacher(ImportConfig(origin="cleanrl", path=str(tmp_path / "dqn.cleanrl_model"), arch="dqn",
                                    env_id="Acrobot-v1"), tmp_path / "t")
    assert not (tmp_path / "t").exists()
    # A folder that already holds something is never written into.
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    rc = main(["import-teacher", "--from", "cleanrl", str(tmp_path / "dqn.cleanrl_model"), "--arch", "dqn",
               "--env", "CartPole-v1", "--out", str(tmp_path / "full")])
    assert rc == 2 and sorted(p.name for p in (tmp_path / "full").iterdir()) == ["notes.txt"]
