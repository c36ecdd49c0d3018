import numpy as np
import pytest

from harness.core.errors import HarnessError
from harness.world.envs import FAMILIES, make_vector_env, resolve_env


@pytest.mark.parametrize(
    ("name", "version", "env_id"),
    [
        ("hopper", "v4", "Hopper-v4"),
        ("walker2d", "v4", "Walker2d-v4"),
        ("halfcheetah", "v4", "HalfCheetah-v4"),
        ("hopper", "v5", "Hopper-v5"),
        ("Walker2d-v5", "v4", "Walker2d-v5"),
        ("HalfCheetah-v4", "v5", "HalfCheetah-v4"),
        ("HOPPER", "v4", "Hopper-v4"),
    ],
)
def test_resolve(name, version, env_id):
    assert resolve_env(name, version).env_id == env_id


@pytest.mark.parametrize("name", ["hopper", "walker2d", "halfcheetah"])
def test_sizes_match_gymnasium(name):
    spec = resolve_env(name)
    env = make_vector_env(spec.env_id, 1)
    assert env.single_observation_space.shape == (spec.state_dim,)
    assert env.single_action_space.shape == (spec.act_dim,)
    assert spec.max_episode_steps == 1000
    env.close()


def test_normalized_score_matches_d4rl_reference():
    hopper = resolve_env("hopper")
    assert hopper.normalized_score(-20.272305) == pytest.approx(0.0)
    assert hopper.normalized_score(3234.3) == pytest.approx(100.0)
    cheetah = resolve_env("halfcheetah")
    assert cheetah.normalized_score(np.array([-280.178953, 12135.0])) == pytest.approx([0.0, 100.0])
    assert FAMILIES["walker2d"].expert_return == 4592.3


@pytest.mark.parametrize(
    ("name", "version", "needle"),
    [
        ("ant", "v4", "unknown env 'ant'; use one of: hopper, walker2d, halfcheetah"),
        ("hopper", "v9", "unknown env version 'v9'"),
        ("Hopper-v3", "v4", "version v3 is not supported"),
    ],
)
def test_unknown(name, version, needle):
    with pytest.raises(HarnessError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        resolve_env(name, version)
