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


def test_env_construction_is_one_thread_at_a_time():
    """MuJoCo's warning handler is one process-wide slot: two threads swapping it while building
    envs aborted the process (``run_episodes(pipelines=2)``). The second builder waits for the first,
    and the handler that was there before is the one left afterwards."""
    import threading

    import mujoco

    from harness.world.envs import quiet_construction

    before = mujoco.get_mju_user_warning()
    inside, release, order = threading.Event(), threading.Event(), []

    def first() -> None:
        with quiet_construction():
            order.append("first in")
            inside.set()
            release.wait(5)
            order.append("first out")

    def second() -> None:
        inside.wait(5)
        with quiet_construction():
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    inside.wait(5)
    threads[1].join(0.3)  # the second builder is still waiting
    assert order == ["first in"]
    release.set()
    for t in threads:
        t.join(5)
    assert order == ["first in", "first out", "second in"]
    assert mujoco.get_mju_user_warning() is before
    with quiet_construction(), quiet_construction():  # re-entrant: a builder may nest
        pass
