"""The embedded checkpoints keep their committed scores (a small fixed sweep)."""

import json

import pytest

from harness import regression
from harness.checkpoints import embedded_names


def test_compare_flags_only_drops_beyond_tolerance():
    ref = {"a": {"mean": 50.0, "std": 10.0, "n": 9}, "b": {"mean": 50.0, "std": 1.0, "n": 9}}
    got = {"a": {"mean": 41.0, "std": 0.0, "n": 9}, "b": {"mean": 46.0, "std": 0.0, "n": 9}}
    lines = regression.compare(ref, got)
    assert lines[0].startswith("ok") and lines[1].startswith("FAIL")  # tolerances 10 and 3


@pytest.mark.skipif(set(regression.TARGETS) - set(embedded_names()), reason="embedded checkpoints not shipped")
def test_embedded_checkpoints_hold_their_scores():
    reference = json.loads(regression.REFERENCE.read_text())["cells"]
    lines = regression.compare(reference, regression.run())
    print("\n".join(lines))
    assert not [line for line in lines if line.startswith("FAIL")], "\n".join(lines)


@pytest.mark.skipif(set(regression.TARGETS) - set(embedded_names()), reason="embedded checkpoints not shipped")
def test_bf16_scores_like_fp32():
    """--precision bf16 on the embedded checkpoints: same seeds, every cell's mean normalised
    score within the episode-to-episode 95% CI of fp32's."""
    lines = regression.compare_precisions(regression.run("fp32"), regression.run("bf16"))
    print("\n".join(lines))
    assert not [line for line in lines if line.startswith("FAIL")], "\n".join(lines)
