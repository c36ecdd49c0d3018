"""Checkpoint format, safe loading and the messages for every way a checkpoint can be wrong."""

import json
import os
import pickle

import numpy as np
import pytest
import torch
from transformers import DecisionTransformerModel

from harness.core.errors import HarnessError
from harness.io.checkpoints import DatasetSummary, hub_table, load_checkpoint
from harness.world.envs import resolve_env

from .conftest import TINY_DATASET, make_checkpoint


def test_round_trip(tmp_path):
    folder = make_checkpoint(tmp_path / "c", "Walker2d-v4", context_length=7, dataset=TINY_DATASET)
    ck = load_checkpoint(str(folder))
    cfg = json.loads((folder / "config.json").read_text())
    np.testing.assert_allclose(ck.state_mean, cfg["state_mean"], rtol=1e-6)
    assert (ck.context_length, ck.return_scale, ck.env_id, ck.env_name) == (7, 1000.0, "Walker2d-v4", "walker2d")
    assert ck.dataset == TINY_DATASET
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert not ck.model.training
    by_path = load_checkpoint(folder)  # a Path works as the string does
    assert by_path.label == ck.label and by_path.fingerprint() == ck.fingerprint()
    # plain transformers loads the same folder and the same weights
    plain = DecisionTransformerModel.from_pretrained(folder)
    for k, v in plain.state_dict().items():
        torch.testing.assert_close(v, ck.model.state_dict()[k])


def test_hub_table_covers_the_nine_published_checkpoints():
    table = hub_table()
    assert len(table) == 9
    for env, dim in (("hopper", 11), ("walker2d", 17), ("halfcheetah", 17)):
        for data in ("medium", "medium-replay", "expert"):
            row = table[f"edbeeching/decision-transformer-gym-{env}-{data}"]
            assert row["env"] == env and len(row["state_mean"]) == len(row["state_std"]) == dim


def edit_config(folder, **changes):
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    path.write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"state_mean": None}, "has no state statistics; pass the data it was trained on with --data"),
        ({"state_std": [1.0] * 5}, "state_std has 5 values but the state size is 11"),
        ({"state_std": [0.0] * 11}, "state_std must be > 0"),
        ({"state_mean": ["a"] * 11}, "state_mean must be a list of 11 numbers"),
        ({"return_scale": -1}, "return_scale must be a positive number"),
        ({"context_length": 0}, "context_length must be a positive number"),
        ({"model_type": "gpt2"}, "expected 'decision_transformer'"),
        ({"hidden_size": 32}, "weights do not match config.json (shapes differ"),
        ({"dataset": {"name": "x"}}, "'dataset' lacks trajectories"),
    ],
)
def test_bad_config(tmp_path, change, needle):
    folder = make_checkpoint(tmp_path / "c")
    edit_config(folder, **change)
    with pytest.raises(HarnessError, match=None) as info:
        load_checkpoint(str(folder))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(HarnessError, match="does not exist"):
        load_checkpoint(str(tmp_path / "nope"))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(HarnessError, match="is a file"):
        load_checkpoint(str(tmp_path / "afile"))
    folder = make_checkpoint(tmp_path / "c")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(HarnessError, match="is not valid JSON"):
        load_checkpoint(str(folder))
    (folder / "config.json").unlink()
    with pytest.raises(HarnessError, match="no config.json"):
        load_checkpoint(str(folder))
    folder = make_checkpoint(tmp_path / "d")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(HarnessError, match="unreadable or truncated"):
        load_checkpoint(str(folder))
    (folder / "model.safetensors").unlink()
    with pytest.raises(HarnessError, match="no weights"):
        load_checkpoint(str(folder))


def test_legacy_bin_weights_load(tmp_path):
    folder = make_checkpoint(tmp_path / "c")
    ref = load_checkpoint(str(folder))
    state = dict(ref.model.state_dict())
    state["encoder.h.0.attn.bias"] = torch.ones(1, 1, 4, 4)  # buffer old GPT-2 checkpoints carry
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    ck = load_checkpoint(str(folder))
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(ck.model.state_dict()[k], v)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    folder = make_checkpoint(tmp_path / "c")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    with open(folder / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"x": _Exploit(marker)}, fh)
    with pytest.raises(HarnessError, match="refused to load pytorch_model.bin"):
        load_checkpoint(str(folder))
    assert not marker.exists()


def test_env_compatibility(tmp_path):
    hopper = load_checkpoint(str(make_checkpoint(tmp_path / "h", "Hopper-v4")))
    hopper.check_env(resolve_env("hopper", "v5"))  # same task, other version: allowed
    with pytest.raises(HarnessError, match="state size 11 and action size 3 but Walker2d-v4 has 17 and 6"):
        hopper.check_env(resolve_env("walker2d"))
    walker = load_checkpoint(str(make_checkpoint(tmp_path / "w", "Walker2d-v4")))
    with pytest.raises(HarnessError, match="was trained on Walker2d-v4, not halfcheetah"):
        walker.check_env(resolve_env("halfcheetah"))  # same sizes, other task


def test_dataset_summary_ignores_extra_keys():
    d = DatasetSummary.from_dict(TINY_DATASET.__dict__ | {"best_length": 3}, "x")
    assert d == TINY_DATASET
