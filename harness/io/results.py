"""The output folder of a sweep: crash-safe episode rows, the run's identity, resume, overwrite.

- ``sweep.json`` holds what determines the results (envs, checkpoints and their weight
  fingerprints, targets, episodes, seed, precision). It is written before the first episode;
  rerunning into the same folder with other arguments is refused with the difference named.
- ``episodes.csv`` grows by whole lines as episodes finish: rows are appended and flushed at
  every step that finishes episodes (fsync at most once a second and at the end), so a killed
  process loses at most the episodes that were running. A torn last line (killed mid-write) is
  dropped on resume; anything else that does not parse is reported, never repaired silently.
- ``--overwrite`` removes everything a sweep writes (result files, every figure, ``videos/``);
  without it a folder holding another sweep's results is refused and nothing is touched.
- At the end ``episodes.csv`` is rewritten in canonical order (cells in command order, targets,
  episode index) by write-to-temp-then-rename: an interrupted and resumed sweep ends with the
  same file as an uninterrupted one (wall times aside).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness.core.errors import HarnessError
from harness.core.schema import EPISODE_KEY, IDENTITY, NO_SHIFT, READ_OPTIONS, RESULT_FILES, VIDEO_DIR, figure_files

FSYNC_INTERVAL_S = 1.0


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def identity_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two identities (empty when they match)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == "cells" and isinstance(a, list) and isinstance(b, list):
            names_a = [f"{c['env']}:{c['checkpoint']}" for c in a]
            names_b = [f"{c['env']}:{c['checkpoint']}" for c in b]
            if names_a != names_b:
                out.append(f"checkpoints {', '.join(names_a)} before, {', '.join(names_b)} now")
                continue
            for ca, cb in zip(a, b, strict=True):
                for field in ("targets", "fingerprint", "env_id"):
                    if ca.get(field) != cb.get(field):
                        what = "weights" if field == "fingerprint" else field
                        out.append(
                            f"{ca['env']}:{ca['checkpoint']} {what} {_short(ca.get(field))} before, "
                            f"{_short(cb.get(field))} now"
                        )
        else:
            out.append(f"{key} {_short(a)} before, {_short(b)} now")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


class EpisodeLog:
    """Append-only ``episodes.csv`` with durable, whole-line writes.

    Args:
        path: the CSV file.
        columns: its header.
    """

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = list(columns)
        self._fh = None
        self._last_sync = 0.0

    def open(self) -> None:
        """Open for appending; writes the header to a new file, drops a torn last line."""
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new:
            _drop_torn_line(self.path)
        self._fh = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
        if new:
            self._fh.write(",".join(self.columns) + "\n")
            self.sync()

    def append(self, rows: pd.DataFrame) -> None:
        """Append whole rows (``rows`` has :attr:`columns`) and flush them to the OS."""
        if self._fh is None:
            raise RuntimeError("EpisodeLog.append before open")
        self._fh.write(rows[self.columns].to_csv(header=False, index=False, lineterminator="\n"))
        self._fh.flush()
        if time.monotonic() - self._last_sync > FSYNC_INTERVAL_S:
            self.sync()

    def sync(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._fh is not None:
            self.sync()
            self._fh.close()
            self._fh = None


def _drop_torn_line(path: Path) -> None:
    """Cut a last line without its newline (a write interrupted by a kill)."""
    with open(path, "rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        block = min(size, 1 << 20)
        fh.seek(size - block)
        tail = fh.read(block)
        cut = tail.rfind(b"\n")
        fh.truncate(size - block + cut + 1 if cut >= 0 else 0)


def read_episodes(
    path: Path,
    columns: Sequence[str],
    cells: dict[tuple[str, str], list[float]],
    episodes: int,
    shifts: Sequence[str] = (NO_SHIFT,),
):
    """Rows already recorded in ``path``, checked against the sweep's identity.

    Args:
        path: ``episodes.csv``.
        columns: the expected header (a file written before the ``shift`` column reads as unshifted).
        cells: ``(env, env id, checkpoint) → targets`` of the sweep.
        episodes: episodes per target.
        shifts: the sweep's shift labels.

    Raises:
        HarnessError: the file does not parse, has other columns, duplicate or unknown rows.
    """
    fix = f"fix or delete {path}, or pass --overwrite to start the sweep again"
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=list(columns))
    _drop_torn_line(path)
    try:
        df = pd.read_csv(path, **READ_OPTIONS)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise HarnessError(f"{path} is corrupted ({first}); {fix}") from None
    if "shift" in columns and list(df.columns) == [c for c in columns if c != "shift"]:
        df.insert(list(columns).index("shift"), "shift", NO_SHIFT)
    if list(df.columns) != list(columns):
        raise HarnessError(f"{path} has columns {list(df.columns)[:4]}..., not a harness episodes file; {fix}")
    if df.empty:
        return df
    try:
        df["target"] = df["target"].astype(float)
        df["episode"] = df["episode"].astype(int)
        df["return"] = df["return"].astype(float)
        df["length"] = df["length"].astype(int)
    except (TypeError, ValueError) as exc:
        raise HarnessError(f"{path} is corrupted (a value does not parse: {exc}); {fix}") from None
    bad = df[df[["env", "checkpoint", "status"]].isna().any(axis=1)]
    if len(bad):
        raise HarnessError(f"{path} is corrupted (row {int(bad.index[0]) + 2} has empty fields); {fix}")
    known = {(*cell, s, float(t)) for cell, targets in cells.items() for t in targets for s in shifts}
    df["shift"] = df["shift"].astype(str)
    keys = ["env", "env_id", "checkpoint", "shift", "target", "episode"]
    for i, row in enumerate(df[keys].itertuples(index=False)):
        cell = (row.env, row.env_id, row.checkpoint, row.shift, float(row.target))
        if cell not in known or not 0 <= row.episode < episodes:
            raise HarnessError(
                f"{path} line {i + 2} is not an episode of this sweep ({row.env_id}, {row.checkpoint}, "
                f"shift {row.shift}, target {row.target}, episode {row.episode}); {fix}"
            )
    dup = df.duplicated(EPISODE_KEY)
    if dup.any():
        raise HarnessError(f"{path} line {int(df.index[dup][0]) + 2} repeats an episode; {fix}")
    return df


def canonical_order(
    df: pd.DataFrame, cells: Sequence[tuple[str, str]], shifts: Sequence[str] = (NO_SHIFT,)
) -> pd.DataFrame:
    """Rows sorted as an uninterrupted sweep writes them: ``(env id, checkpoint)`` cells in order,
    then shift (in ``shifts`` order), target, episode."""
    rank = {cell: i for i, cell in enumerate(cells)}
    srank = {s: i for i, s in enumerate(shifts)}
    order = df.assign(
        _cell=[rank[(e, c)] for e, c in zip(df["env_id"], df["checkpoint"], strict=True)],
        _shift=[srank[s] for s in df["shift"]],
    )
    return (
        order.sort_values(["_cell", "_shift", "target", "episode"], kind="stable")
        .drop(columns=["_cell", "_shift"])
        .reset_index(drop=True)
    )


def check_out(out: Path) -> None:
    """Refuse an output path that is a file or lies under a file."""
    if out.exists() and not out.is_dir():
        raise HarnessError(f"--out {out} is a file; pass a folder path")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise HarnessError(f"--out {out}: {parent} is a file; pass a folder path")
            break


def held(out: Path) -> list[str]:
    """What of a sweep's output ``out`` already holds (files, figures, the videos folder)."""
    if not out.is_dir():
        return []
    names = [n for n in (*RESULT_FILES, *figure_files()) if (out / n).exists()]
    return names + ([VIDEO_DIR] if (out / VIDEO_DIR).is_dir() else [])


def resume_or_refuse(out: Path, identity: dict[str, Any], overwrite: bool) -> bool:
    """Decide what to do with an existing ``out``: True when a matching sweep is resumed.

    With ``overwrite`` every file a sweep writes is removed (figures and videos included, so that
    no stale output of other weights survives).

    Raises:
        HarnessError: ``out`` holds results of another sweep (or of no known sweep) and
            ``overwrite`` is not set.
    """
    present = held(out)
    if not present:
        return False
    if overwrite:
        for name in present:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        return False
    if IDENTITY not in present:
        raise HarnessError(
            f"--out {out} already holds results ({', '.join(present)}) of no resumable sweep; pass a new --out "
            "folder, or --overwrite to replace them"
        )
    try:
        old = json.loads((out / IDENTITY).read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{out / IDENTITY} is unreadable ({exc}); pass --overwrite to start again") from None
    diff = identity_differences(old, identity)
    if diff:
        raise HarnessError(
            f"--out {out} holds a sweep with other arguments ({'; '.join(diff[:3])}); rerun its command to "
            "resume it, pass a new --out, or --overwrite to replace it"
        )
    return True


def prepare_out(out: Path) -> None:
    """Create ``out`` and check that it is writable."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise HarnessError(f"--out {out} is not writable ({exc.strerror}); pass a folder you can write to") from None
