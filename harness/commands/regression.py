"""Result regression gate of the embedded checkpoints: ``python -m harness.regression``.

A fixed sweep (3 targets per env, :data:`EPISODES` episodes each, seeds ``SEED + k``) of the
embedded checkpoints, checked against ``results/reference/regression.json`` in one of two ways:

- **exact** (the reference was written on this platform, :func:`platform`: under pinned numerics
  any x86-64 CPU with AVX2, else the same CPU model and ISA; the same BLAS and package versions,
  and the same :data:`EVALUATION_REVISION`): the first :data:`EXACT_EPISODES`
  episodes of every cell must return the same floats, bit for bit, and last as long. The
  evaluator is deterministic and batch-invariant there, so any changed action shows up as a
  changed return: any difference is a finding (and needs no more episodes to be seen).
- **statistical** (another platform: its float rounding may send an episode down another
  trajectory): :func:`harness.analysis.comparison.compare` of the reference's episodes and today's,
  paired by seed, bootstrap CIs with Bonferroni over every cell and env, failing on a
  significant drop larger than :data:`MIN_DROP` points; and on a significant drop of the
  return-conditioning rho or slope over the gate's targets (:func:`check_calibration`: a
  checkpoint that stops following its target fails even where its mean holds). Its power and
  false-alarm rate are measured in ``benchmarks/checks/regression_power.py`` (README, "Regression gate").

A changed checkpoint (its fingerprint differs from the reference's) fails in both modes: rewrite
the reference with ``--write --reason``. A checkpoint's reference rows may change between two
committed versions only if its fingerprint, the platform or :data:`EVALUATION_REVISION` changed,
and each rewrite records its reason (``tests/test_regression.py`` reads the git history).

    python -m harness.regression                              # check (exit 1 on a finding)
    python -m harness.regression --write --reason "why"       # rewrite the reference values
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.calibration import compare_calibration
from harness.analysis.comparison import compare, pair_checkpoints
from harness.commands.cli import Parser
from harness.commands.cli import run as run_command
from harness.core import numerics
from harness.core.errors import HarnessError
from harness.core.provenance import machine, versions
from harness.engine.evaluate import evaluate
from harness.io.checkpoints import Checkpoint, embedded_names, load_checkpoint
from harness.world.envs import resolve_env

REFERENCE = Path(__file__).resolve().parents[2] / "results" / "reference" / "regression.json"
FORMAT = 2
EPISODES = 48
"""Episodes per cell of the reference and of the statistical check (its power: README)."""
EXACT_EPISODES = 12
"""Episodes per cell the exact check reruns (a subset of the reference's, same seeds)."""
SEED = 1000
#: target returns per env: low, middle and high inside each embedded dataset's range
TARGETS = {
    "hopper": [800.0, 2000.0, 3600.0],
    "walker2d": [1000.0, 2500.0, 4500.0],
    "halfcheetah": [3000.0, 7000.0, 12000.0],
}
MIN_DROP = 5.0
"""Normalised points: the statistical mode fails on a significant drop larger than this."""
EVALUATION_REVISION = 6
"""Bumped by a change of the evaluator that changes floating-point results on purpose (2: the
fixed-block forward; 3: pinned numerics; 4: fixed-order products; 5: fixed-order layer norms and
attention softmax in the kernel; 6: the action head's tanh in the kernel, not MKL's VML, whose bits
differ between Intel and AMD CPUs).
The exact mode compares only within one revision."""
ROW_COLUMNS = ["env", "target", "episode", "seed", "return", "length", "normalized_score"]
PACKAGES = ("torch", "transformers", "gymnasium", "mujoco", "numpy")


def platform() -> dict[str, Any]:
    """What must match for the exact mode.

    Under pinned numerics (:mod:`harness.core.numerics`, in force) the floats are the same on every
    x86-64 CPU with AVX2, so the platform is the numerics definition (the fixed-order kernel's
    version, not which ISA ran it), the architecture and the package versions, not the CPU model
    or the BLAS: the exact check runs on every such CPU, AVX2-only or AVX-512, Intel or AMD.
    Otherwise (``local`` or ``native`` mode,
    another architecture, no C compiler for the kernel, a GPU) it also names the CPU model, its
    ISA and the BLAS.
    """
    m = machine()
    v = versions()
    state = numerics.state()
    out: dict[str, Any] = {
        "numerics": (
            f"pinned (fixed-order kernel, definition {state['definition']})"
            if state["portable"]
            else f"{state['mode']}{'' if state['in_force'] else ' (not in force)'}"
        ),
        "arch": m.get("arch"),
        "cuda": m.get("cuda"),
        "versions": {k: v.get(k) for k in PACKAGES},
        "evaluation_revision": EVALUATION_REVISION,
    }
    if not state["portable"] or m.get("cuda"):
        out |= {"cpu": m.get("cpu"), "isa": m.get("isa"), "blas": m.get("blas")}
    return out


def same_numerics(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two platforms compute the same floats for the same code and packages: all of
    :func:`platform` but the package versions (whose effect the exact subset itself shows)."""
    return {k: v for k, v in a.items() if k != "versions"} == {k: v for k, v in b.items() if k != "versions"}


def why_not_exact(reference: dict[str, Any], now: dict[str, Any]) -> str:
    """One line: why this platform cannot run the exact check against ``reference`` (what differs)."""
    ref = reference.get("platform", {})
    if ref.get("evaluation_revision") != now.get("evaluation_revision"):
        return (
            f"the reference is of evaluation revision {ref.get('evaluation_revision')}, this code of "
            f"{now.get('evaluation_revision')}: rewrite it with --write --reason"
        )
    if not str(now.get("numerics", "")).startswith("pinned ("):
        state = numerics.state()
        detail = (
            state.get("why_not")
            or state.get("note")
            or ("a GPU" if now.get("cuda") else f"{state['mode']} numerics are exact on this kind of CPU only")
        )
        here, there = now.get("numerics"), ref.get("numerics")
        return f"this platform's numerics are {here!r}, not the reference's {there!r}: {detail}"
    diff = [k for k in sorted(set(ref) | set(now)) if k != "versions" and ref.get(k) != now.get(k)]
    return "; ".join(f"{k}: reference {ref.get(k)!r}, here {now.get(k)!r}" for k in diff) or "nothing differs"


def changed_versions(reference: dict[str, Any], now: dict[str, Any] | None = None) -> list[str]:
    """``["transformers 5.24.0 -> 5.25.0", ...]``: the packages whose versions differ from the reference's."""
    old = reference.get("platform", {}).get("versions", {})
    new = (now or platform()).get("versions", {})
    return [f"{k} {old.get(k)} -> {new.get(k)}" for k in PACKAGES if old.get(k) != new.get(k)]


def run(
    precision: str = "fp32",
    checkpoints: Mapping[str, Checkpoint] | None = None,
    episodes: int = EPISODES,
    seed: int = SEED,
    envs: list[str] | None = None,
) -> pd.DataFrame:
    """The fixed sweep: one row per episode (columns :data:`ROW_COLUMNS` + ``status``).

    Args:
        precision: ``fp32`` or ``bf16``.
        checkpoints: per env; default the embedded ones.
        episodes, seed: episodes per cell and the base reset seed.
        envs: a subset of :data:`TARGETS`' envs (default all).
    """
    frames = []
    for env_name, targets in TARGETS.items():
        if envs is not None and env_name not in envs:
            continue
        ckpt = checkpoints[env_name] if checkpoints is not None and env_name in checkpoints else _embedded(env_name)
        df = evaluate(ckpt, resolve_env(env_name), targets, episodes=episodes, seed=seed, precision=precision)
        frames.append(df)
    rows = pd.concat(frames, ignore_index=True)
    return rows[[*ROW_COLUMNS, "status"]].sort_values(["env", "target", "episode"], ignore_index=True)


@functools.lru_cache(maxsize=3)
def _embedded(env_name: str) -> Checkpoint:
    return load_checkpoint(env_name)


@functools.lru_cache(maxsize=4)
def run_embedded(precision: str = "fp32", episodes: int = EPISODES) -> pd.DataFrame:
    """:func:`run` of the embedded checkpoints, cached within a process."""
    return run(precision, episodes=episodes)


def resolve_mode(reference: dict[str, Any], mode: str = "auto") -> str:
    """``auto`` → ``exact`` where this platform computes the reference's floats (:func:`same_numerics`:
    whatever the package versions; ``_check`` falls back to ``statistical`` when rows differ and
    versions changed), else ``statistical``."""
    if mode == "auto":
        return "exact" if same_numerics(reference.get("platform", {}), platform()) else "statistical"
    return mode


def gate_episodes(reference: dict[str, Any], mode: str) -> int:
    """Episodes per cell a check in ``mode`` (exact or statistical) runs."""
    return min(EXACT_EPISODES, int(reference["episodes"])) if mode == "exact" else int(reference["episodes"])


def fingerprints(checkpoints: Mapping[str, Checkpoint] | None = None) -> dict[str, str]:
    """``{env: fingerprint}`` of the checkpoints the gate runs."""
    return {e: (checkpoints[e] if checkpoints is not None else _embedded(e)).fingerprint() for e in TARGETS}


def reference_rows(reference: dict[str, Any]) -> pd.DataFrame:
    """The reference's episodes as a frame (columns :data:`ROW_COLUMNS`)."""
    return pd.DataFrame(reference["rows"], columns=ROW_COLUMNS)


def read_reference(path: Path = REFERENCE) -> dict[str, Any]:
    try:
        ref = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path} is unreadable ({exc}); rewrite it with --write --reason") from None
    if ref.get("format") != FORMAT:
        raise HarnessError(
            f"{path} has format {ref.get('format')}, expected {FORMAT}; rewrite it with --write --reason"
        )
    return ref


def make_reference(rows: pd.DataFrame, prints: dict[str, str], reason: str) -> dict[str, Any]:
    """The JSON written by ``--write``: episodes, fingerprints, platform and the reason."""
    return {
        "format": FORMAT,
        "reason": reason,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform(),
        "episodes": int(rows.groupby(["env", "target"]).size().max()),
        "seed": SEED,
        "targets": TARGETS,
        "fingerprints": prints,
        "rows": [
            {
                "env": str(r["env"]),
                "target": float(r["target"]),
                "episode": int(r["episode"]),
                "seed": int(r["seed"]),
                "return": float(r["return"]),
                "length": int(r["length"]),
                "normalized_score": float(r["normalized_score"]),
            }
            for r in rows[ROW_COLUMNS].to_dict("records")
        ],
    }


def check(
    reference: dict[str, Any],
    rows: pd.DataFrame,
    prints: dict[str, str],
    mode: str = "auto",
    min_drop: float = MIN_DROP,
    calibration: bool = True,
) -> tuple[str, list[str], bool]:
    """Check today's ``rows`` against ``reference``; returns ``(mode used, lines, failed)``.

    ``mode``: ``exact``, ``statistical``, or ``auto`` (exact when :func:`platform` equals the
    reference's). ``calibration``: the statistical mode also fails when rho or slope of the
    return-conditioning response drops significantly (:func:`check_calibration`); the exact mode
    needs no such check, equal rows have equal numbers.
    """
    lines: list[str] = []
    failed = False
    for env, fp in prints.items():
        was = reference["fingerprints"].get(env)
        if was != fp:
            failed = True
            lines.append(
                f"FAIL {env}: the checkpoint changed since the reference (fingerprint {was} -> {fp}); "
                "rewrite it with --write --reason"
            )
    mode = resolve_mode(reference, mode)
    ref = reference_rows(reference)
    key = ["env", "target", "episode"]
    if mode == "exact":
        ref = ref[ref["episode"] < int(rows.groupby(["env", "target"]).size().min())]  # the episodes rerun
        both = ref.merge(rows, on=key, how="outer", suffixes=("_ref", "_now"), indicator=True)
        for row in both.to_dict("records"):
            where = f"{row['env']}/{row['target']:.0f} episode {row['episode']}"
            if row["_merge"] != "both":
                failed = True
                lines.append(f"FAIL {where}: in {'the reference' if row['_merge'] == 'left_only' else 'today'} only")
            elif row["return_ref"] != row["return_now"] or row["length_ref"] != row["length_now"]:
                failed = True
                lines.append(
                    f"FAIL {where}: return {row['return_ref']!r} -> {row['return_now']!r}, "
                    f"length {row['length_ref']} -> {row['length_now']} (actions changed)"
                )
        if not failed:
            lines.append(f"ok   exact: all {len(ref)} episodes return the same floats as the reference")
        return mode, lines, failed
    base = ref.assign(checkpoint="reference", status="ok")
    cand = rows.assign(checkpoint="today")
    pairs = pair_checkpoints(base, cand, [])
    table = compare(base, cand, pairs, min_drop=min_drop)
    for r in table.itertuples(index=False):
        where = f"{r.env}/{'all' if r.level == 'env' else f'{r.target:.0f}'}"
        status = "FAIL" if r.verdict == "drop" else "ok"
        failed |= status == "FAIL"
        lines.append(
            f"{status:4} {where:18} reference {r.baseline_mean:6.1f}  now {r.candidate_mean:6.1f}  "
            f"diff {r.diff:+5.1f} [{r.diff_ci_low:+.1f}, {r.diff_ci_high:+.1f}]  {r.verdict}"
        )
    if calibration:
        cal_lines, cal_failed = check_calibration(base, cand, pairs.pairs)
        lines += cal_lines
        failed |= cal_failed
    return mode, lines, failed


def check_calibration(
    base: pd.DataFrame, cand: pd.DataFrame, pairs: dict[str, list[tuple[str, str]]]
) -> tuple[list[str], bool]:
    """The statistical mode's return-conditioning check: rho and slope of achieved on target over
    the gate's targets (:func:`harness.analysis.calibration.compare_calibration`, paired by seed,
    Bonferroni over every env and number); ``FAIL`` where either drops significantly, so a
    checkpoint that stops reading its return tokens fails even where its mean score holds."""
    envs = sorted(pairs)
    summary = pd.DataFrame(
        {
            "env": envs,
            "checkpoint": "reference",
            "env_id": [resolve_env(e).env_id for e in envs],
            # no dataset range: every target of the gate counts (all lie inside the embedded data's)
            "dataset_return_p10": float("nan"),
            "dataset_return_p90": float("nan"),
        }
    )
    table = compare_calibration(base, summary, cand, pairs)
    lines, failed = [], False
    for r in table.itertuples(index=False):
        status = "FAIL" if r.verdict == "drop" else "ok"
        failed |= status == "FAIL"
        where = f"{r.env}/{r.number}"
        lines.append(
            f"{status:4} {where:18} reference {r.baseline_value:6.2f}  now {r.candidate_value:6.2f}  "
            f"diff {r.diff:+5.2f} [{r.diff_ci_low:+.2f}, {r.diff_ci_high:+.2f}]  {r.verdict}"
        )
    return lines, failed


def unexplained_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Checkpoints whose reference rows differ between two versions of the reference without cause.

    A checkpoint's rows may change only if its fingerprint, the platform or the evaluation
    revision changed, and the new version must give a new ``reason``. Returns one line per breach.
    """
    if old.get("format") != FORMAT or new.get("format") != FORMAT:
        return []
    found = []
    a, b = reference_rows(old), reference_rows(new)
    for env in sorted(set(b["env"])):
        ra = a[a["env"] == env].sort_values(["target", "episode"]).reset_index(drop=True)
        rb = b[b["env"] == env].sort_values(["target", "episode"]).reset_index(drop=True)
        if ra.equals(rb):
            continue
        causes = [
            name
            for name, changed in (
                ("weights", old["fingerprints"].get(env) != new["fingerprints"].get(env)),
                ("platform", old.get("platform") != new.get("platform")),
            )
            if changed
        ]
        if not causes:
            found.append(f"{env}: reference rows changed but its weights, the platform and the revision did not")
        elif new.get("reason") == old.get("reason"):
            found.append(f"{env}: reference rows changed ({', '.join(causes)}) without a new reason")
    return found


def compare_precisions(fp32: pd.DataFrame, other: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """Lines per cell; ``FAIL`` when the two means differ by more than the episode-to-episode CI.

    The CI half-width is ``z * sqrt(s1**2 / n + s2**2 / n)`` of the two cells' episode scores,
    with ``z`` for a family-wise ``alpha`` over all cells (Bonferroni: 9 cells at 95% each would
    raise a false alarm about a third of the time; seen once, halfcheetah/7000 by 0.1 point), and
    at least 1 point (cells whose episodes all score alike would otherwise demand bit-equal returns,
    which bf16 does not promise).
    """
    from scipy.stats import norm

    cells = list(fp32.groupby(["env", "target"]))
    z = float(norm.ppf(1 - alpha / (2 * max(len(cells), 1))))
    lines = []
    for (env, target), a in cells:
        b = other[(other["env"] == env) & (other["target"] == target)]
        sa, sb = a["normalized_score"], b["normalized_score"]
        half = max(z * (sa.var() / len(sa) + sb.var() / len(sb)) ** 0.5, 1.0)
        diff = sb.mean() - sa.mean()
        status = "FAIL" if abs(diff) > half else "ok"
        lines.append(
            f"{status:4} {env}/{target:<8.0f} fp32 {sa.mean():6.1f}  other {sb.mean():6.1f}  "
            f"diff {diff:+5.1f}  CI ±{half:4.1f}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="harness regression", description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help="rewrite results/reference/regression.json")
    p.add_argument("--reason", default=None, help="why the reference is rewritten (required with --write)")
    p.add_argument(
        "--mode",
        choices=["auto", "exact", "statistical"],
        default="auto",
        help="exact: the first episodes of every cell bit for bit (auto: on the reference's platform); "
        "statistical: compare all of them with the reference's",
    )
    args = p.parse_args(argv)
    return run_command(lambda: _check(args.write, args.reason, args.mode))


def _check(write: bool, reason: str | None, mode: str) -> int:
    missing = [e for e in TARGETS if e not in embedded_names()]
    if missing:
        raise HarnessError(f"no embedded checkpoint for {', '.join(missing)}; reinstall the package (pip install -e .)")
    if write and not (reason and reason.strip()):
        raise HarnessError("--write needs --reason 'why the reference changes' (recorded in the JSON)")
    if write:
        rows = run_embedded()
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        REFERENCE.write_text(json.dumps(make_reference(rows, fingerprints(), reason.strip()), indent=1) + "\n")
        print(f"wrote {REFERENCE}")
        return 0
    reference = read_reference()
    lines, failed = gate(reference, lambda n: run_embedded(episodes=n), fingerprints(), mode)
    print("\n".join(lines))
    return 1 if failed else 0


def gate(
    reference: dict[str, Any],
    run_rows: Callable[[int], pd.DataFrame],
    prints: dict[str, str],
    mode: str = "auto",
    now: dict[str, Any] | None = None,
) -> tuple[list[str], bool]:
    """The whole check as ``harness regression`` runs it: ``(lines to print, failed)``.

    ``run_rows(episodes)`` runs the fixed sweep with that many episodes per cell. In ``auto``
    mode, wherever this platform computes the reference's floats (:func:`same_numerics`) the exact
    subset runs first, whatever the package versions: equal rows pass, naming the packages that
    changed without effect; rows that differ while packages changed are reported with the
    packages, then the statistical check decides. ``now``: this platform (default
    :func:`platform`).
    """
    now = now or platform()
    auto = mode == "auto"
    why = None
    if auto:
        mode = "exact" if same_numerics(reference.get("platform", {}), now) else "statistical"
        if mode == "statistical":
            why = f"exact check not possible here: {why_not_exact(reference, now)}"
    changed = changed_versions(reference, now)
    used, lines, failed = check(reference, run_rows(gate_episodes(reference, mode)), prints, mode)
    out = [f"mode: {used}", *([why] if why else []), *lines]
    if used == "exact" and changed:
        out.append(
            ("packages changed since the reference without effect: " if not failed else "packages changed: ")
            + "; ".join(changed)
        )
    prints_ok = all(reference["fingerprints"].get(e) == fp for e, fp in prints.items())
    if auto and used == "exact" and failed and changed and prints_ok:
        # a new release may round differently: a finding for the exact gate, not by itself a
        # regression; the statistical check says whether scores dropped
        out.append("rows differ from the reference and packages changed: running the statistical check")
        used, lines, failed = check(reference, run_rows(gate_episodes(reference, "statistical")), prints, "statistical")
        out += [f"mode: {used}", *lines]
    return out, failed


if __name__ == "__main__":
    sys.exit(main())
