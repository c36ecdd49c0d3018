"""An offline W&B run read back from its ``run-*.wandb`` log, for the tests of ``harness log --wandb``.

wandb 0.31 has no reader of its own that works without a server (its ``LocalApi`` is an open pull
request), so the framing is read here: the documented LevelDB log format W&B writes (32 KiB
blocks, records of type full/first/middle/last, each with a CRC-32 that is checked), each record
decoded with W&B's own protobuf ``Record``.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError

_WANDB_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
"""The first 7 bytes of a ``.wandb`` log: identifier, magic number, format version 0."""
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _wandb_records(path: Path) -> list[bytes]:
    """The serialised records of a ``.wandb`` log (LevelDB log framing, CRC-32 checked)."""
    data = Path(path).read_bytes()
    if not data.startswith(_WANDB_HEADER):
        raise HarnessError(f"{path} is not a W&B run log (its header is {data[:7]!r}); pass a run-*.wandb file")
    records: list[bytes] = []
    pos, pending = len(_WANDB_HEADER), None
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # a block's trailer: zeros, then the next block
            pos += left
            continue
        crc, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and n == 0:  # zero padding to the end of the block
            pos += left
            continue
        body = data[pos + 7 : pos + 7 + n]
        if len(body) != n or zlib.crc32(body, zlib.crc32(bytes([kind]))) != crc:
            raise HarnessError(f"{path} is damaged at byte {pos} (a record fails its checksum); log the sweep again")
        pos += 7 + n
        if kind == _FULL:
            records.append(body)
        elif kind == _FIRST:
            pending = body
        elif kind in (_MIDDLE, _LAST) and pending is not None:
            pending += body
            if kind == _LAST:
                records.append(pending)
                pending = None
    return records


def read_wandb_run(run_dir: Path) -> dict[str, Any]:
    """An offline W&B run read back from its folder: ``{"id", "name", "project", "config",
    "summary", "history", "files", "complete"}``; config and summary as ``{key: value}`` (later
    updates win), history as a list of ``{key: value}`` rows in logged order, files as the paths
    saved, complete whether the log holds the run's exit record (a finished run)."""
    from wandb.proto import wandb_internal_pb2 as pb

    logs = sorted(Path(run_dir).glob("run-*.wandb"))
    if not logs:
        raise HarnessError(f"{run_dir} has no run-*.wandb log; pass a W&B run folder (wandb/offline-run-*)")
    out: dict[str, Any] = {"config": {}, "summary": {}, "history": [], "files": [], "complete": False}

    def key(item: Any) -> str:
        return ".".join(item.nested_key) if item.nested_key else item.key

    for blob in _wandb_records(logs[-1]):
        record = pb.Record()
        record.ParseFromString(blob)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out |= {"id": record.run.run_id, "name": record.run.display_name, "project": record.run.project}
            out["config"] |= {key(u): json.loads(u.value_json) for u in record.run.config.update}
        elif kind == "config":
            out["config"] |= {key(u): json.loads(u.value_json) for u in record.config.update}
        elif kind == "summary":
            out["summary"] |= {key(u): json.loads(u.value_json) for u in record.summary.update}
        elif kind == "history":
            out["history"].append({key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "files":
            out["files"] += [f.path for f in record.files.files]
        elif kind == "exit":
            out["complete"] = True
    return out
