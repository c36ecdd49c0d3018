"""Episode videos (``--video N`` of the sweep) and grid videos (library of ``python -m harness.video``).

Recording replays an episode on its own: the same checkpoint, target and reset seed in a
one-slot rollout whose env renders offscreen (MuJoCo, ``MUJOCO_GL=egl`` by default on a machine
without a display, ``osmesa`` as the alternative). The fast action head gives every window the
same action whatever shares its batch, so the replay is the sweep's episode, step for step (the
sweep checks the return); the episodes that are not recorded never render and are not slowed.

The grid command tiles one env's recorded episodes, one tile per target (the first recorded
episode of each), with the target written on the tile: conditioning at a glance.

Needs the ``video`` extra (imageio with its ffmpeg binary).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.errors import HarnessError
from harness.core.schema import EPISODES, VIDEO_DIR
from harness.engine.policy import DTPolicy
from harness.engine.rollout import EpisodeResult, EpisodeSpec, run_episodes
from harness.io.checkpoints import Checkpoint
from harness.world.shift import Shift

DEFAULT_SIZE = (256, 256)


def _file_safe(text: str) -> str:
    """``text`` with every run of characters outside ``[A-Za-z0-9._-]`` made one ``-`` (ends trimmed)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")


def video_name(
    env: str, checkpoint: str, target: float, seed: int, fingerprint: str, precision: str, shift: str = "none"
) -> str:
    """``<env>_<checkpoint>_<weights>_<precision>_target<T>_seed<S>.mp4``, the label made file-safe.

    The name carries the weights' fingerprint (first 12 hex digits) and the precision: a file of
    that name can only be this episode, so a resumed sweep may reuse it and no other weights'
    video is ever linked.

    >>> video_name("hopper", "runs/a b", 1800.0, 3, "0123456789abcdef", "fp32")
    'hopper_runs-a-b_0123456789ab_fp32_target1800_seed3.mp4'
    >>> video_name("hopper", "hopper", 1800.0, 3, "0123456789abcdef", "fp32", "mass=0.8,obs_noise=0.05")
    'hopper_hopper_0123456789ab_fp32_mass-0.8-obs_noise-0.05_target1800_seed3.mp4'

    A shifted episode's name carries its shift label (file-safe); an unshifted one's does not.
    """
    label = _file_safe(checkpoint) or "checkpoint"
    cond = "" if shift == "none" else _file_safe(shift) + "_"
    return f"{env}_{label[-60:]}_{fingerprint[:12]}_{precision}_{cond}target{target:g}_seed{seed}.mp4"


def require_encoder() -> None:
    """Raise one clear error when the MP4 encoder packages are missing."""
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg  # noqa: F401 - the ffmpeg binary imageio needs for MP4
    except ImportError:
        raise HarnessError(
            "writing MP4 videos needs imageio and imageio-ffmpeg: pip install 'harness[video]'"
        ) from None


def _writer(path: Path, fps: float):
    require_encoder()
    import imageio.v2 as imageio

    return imageio.get_writer(
        str(path), fps=fps, codec="libx264", quality=6, macro_block_size=1, ffmpeg_log_level="error"
    )


def check_renderer(env_id: str, size: tuple[int, int] = (64, 64)) -> None:
    """Render one frame offscreen, or raise one clear error saying what to install."""
    import os

    from harness.world.envs import make_vector_env

    try:
        envs = make_vector_env(env_id, 1, render_size=size)
        envs.reset(seed=0)
        frame = np.asarray(envs.render()[0])
        envs.close()
    except Exception as exc:  # noqa: BLE001 - any GL failure gets the same advice
        backend = os.environ.get("MUJOCO_GL", "(unset)")
        first = (str(exc).strip().splitlines() or [""])[0]
        raise HarnessError(
            f"offscreen MuJoCo rendering failed with MUJOCO_GL={backend} ({type(exc).__name__}: {first}); "
            "install EGL (apt-get install libegl1 libgl1-mesa-dri) or OSMesa (apt-get install libosmesa6 "
            "and set MUJOCO_GL=osmesa)"
        ) from None
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise HarnessError(f"offscreen rendering returned a frame of shape {frame.shape}, not (h, w, 3)")


def record(
    checkpoint: Checkpoint,
    env_id: str,
    spec: EpisodeSpec,
    path: Path,
    precision: str = "fp32",
    device: str = "cpu",
    size: tuple[int, int] = DEFAULT_SIZE,
    shift: Shift | None = None,
) -> EpisodeResult:
    """Run ``spec`` alone with rendering and write its MP4 to ``path``.

    Frames: the reset state, then one per step (``length + 1``), ``size`` = (width, height), at
    the env's real-time rate (its ``render_fps``). ``shift``: the episode's shift (dynamics on the
    rendered env, noise from the episode's own generators), as in the sweep.
    """
    from harness.world.envs import make_env

    probe = make_env(env_id)
    fps = float(probe.metadata.get("render_fps") or 30)
    probe.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    writer = _writer(tmp, fps)
    try:
        (result,) = run_episodes(
            DTPolicy(checkpoint, device=device, precision=precision),
            env_id,
            [spec],
            1,
            on_frame=writer.append_data,
            render_size=size,
            shift=shift,
        )
    finally:
        writer.close()
    tmp.replace(path)
    return result


def read_frames(path: Path) -> np.ndarray:
    """All frames of a video as ``(n, height, width, 3)`` uint8."""
    import imageio.v2 as imageio

    reader = imageio.get_reader(str(path))
    try:
        return np.stack([np.asarray(f) for f in reader])
    finally:
        reader.close()


def label_lines(text: str, width: int, measure) -> list[str]:  # noqa: ANN001
    """``text`` broken into lines no wider than ``width`` pixels (``measure(line)`` gives a width):
    at spaces where it can, inside a word where one word alone is too wide; nothing is dropped.

    >>> label_lines("target 3600 seed 14", 60, lambda s: 6 * len(s))
    ['target', '3600 seed', '14']
    """
    lines: list[str] = []
    for word in text.split(" "):
        line = f"{lines[-1]} {word}" if lines else word
        if lines and measure(line) <= width:
            lines[-1] = line
            continue
        while measure(word) > width and len(word) > 1:  # a word wider than the tile: cut it
            cut = max(1, max(i for i in range(1, len(word) + 1) if measure(word[:i]) <= width or i == 1))
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines


def _label(frame: np.ndarray, text: str, dim: bool) -> np.ndarray:
    """``frame`` with ``text`` on a black band at the top, wrapped to the tile's width (a long
    checkpoint name must not run off the tile), dimmed when the episode has ended."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(frame)
    if dim:
        img = Image.blend(img, Image.new("RGB", img.size, (0, 0, 0)), 0.45)
    draw = ImageDraw.Draw(img)
    lines = label_lines(text, img.size[0] - 8, draw.textlength)
    draw.rectangle([0, 0, img.size[0], 6 + 12 * len(lines)], fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((4, 3 + 12 * i), line, fill=(255, 255, 255))
    return np.asarray(img)


def tile(videos: Sequence[tuple[str, Path]], out: Path, columns: int | None = None) -> Path:
    """Tile videos into one grid video; each tile is labelled, and frozen and dimmed once it ends.

    Args:
        videos: ``(label, path)`` per tile, in reading order; all of one frame size.
        out: the MP4 to write.
        columns: tiles per row (default: about square).
    """
    import imageio.v2 as imageio

    if not videos:
        raise HarnessError("no videos to tile; run the sweep with --video N first")
    readers = [imageio.get_reader(str(p)) for _, p in videos]
    try:
        fps = float(readers[0].get_meta_data().get("fps", 30))
        lengths = [r.count_frames() for r in readers]
        iters = [iter(r) for r in readers]
        cols = columns or math.ceil(math.sqrt(len(videos)))
        rows = math.ceil(len(videos) / cols)
        last: list[np.ndarray | None] = [None] * len(videos)
        writer = _writer(out, fps)
        try:
            for t in range(max(lengths)):
                tiles = []
                for i, ((label, _), it) in enumerate(zip(videos, iters, strict=True)):
                    if t < lengths[i]:
                        last[i] = np.asarray(next(it))
                    frame = last[i]
                    ended = t >= lengths[i]
                    tiles.append(_label(frame, label + (" (ended)" if ended else ""), ended))
                h, w = tiles[0].shape[:2]
                grid = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
                for i, img in enumerate(tiles):
                    r, c = divmod(i, cols)
                    grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = img
                writer.append_data(grid)
        finally:
            writer.close()
    finally:
        for r in readers:
            r.close()
    return out


def grid_for_env(
    run: Path,
    env: str,
    checkpoint: str | None = None,
    out: Path | None = None,
    shift: str = "none",
    version: str | None = None,
) -> Path:
    """The grid video of one env of a sweep folder: one column per target, one row per recorded
    episode (``--video N``: episodes 0..N-1 of every target, the same reset seeds in a row).

    ``shift``: the condition's shift label (``none``: unshifted); ``version``: the env version
    (``v5``; default: the first recorded). The grid is named after the env, and after the
    version and shift where the sweep has several."""
    csv = run / EPISODES
    if not csv.is_file():
        raise HarnessError(f"no {EPISODES} in {run}; pass a folder written by python -m harness.sweep")
    df = pd.read_csv(csv, keep_default_na=False)
    if "video" not in df.columns:
        raise HarnessError(f"{csv} lists no videos; rerun the sweep with --video N")
    if "shift" not in df.columns:  # written before the shift axis
        df["shift"] = "none"
    rows = df[(df["env"] == env) & (df["video"] != "")]
    if rows.empty:
        envs = sorted(set(df.loc[df["video"] != "", "env"]))
        raise HarnessError(f"no videos of {env} in {run}; recorded envs: {', '.join(envs) or 'none (use --video N)'}")
    labels = sorted(rows["checkpoint"].unique())
    label = checkpoint or labels[0]
    if label not in labels:
        raise HarnessError(f"no videos of checkpoint {label!r} for {env}; recorded: {', '.join(labels)}")
    rows = rows[rows["checkpoint"] == label]
    try:  # the label as the sweep writes it, whatever the order of its parts
        shift = Shift.from_label(shift).label
    except (TypeError, ValueError):
        raise HarnessError(f"--shift {shift!r} is not a shift label (NAME=VALUE,...); e.g. mass=0.8") from None
    versions = sorted({str(i).rsplit("-", 1)[-1] for i in rows["env_id"]})
    version = version or versions[0]
    shifts = sorted(set(rows["shift"]))
    if version not in versions or shift not in shifts:
        raise HarnessError(
            f"no videos of {env} {version} under shift {shift!r}; recorded versions {', '.join(versions)}, "
            f"shifts {' '.join(map(repr, shifts))} (pass --env-version and --shift)"
        )
    rows = rows[(rows["env_id"].str.endswith("-" + version)) & (rows["shift"] == shift)]
    rows = rows.sort_values(["episode", "target"])
    videos = [
        (f"target {float(t):,.0f}  seed {s}  return {float(r):,.0f}", run / v)
        for t, s, r, v in zip(rows["target"], rows["seed"], rows["return"], rows["video"], strict=True)
    ]
    tag = (f"_{version}" if len(versions) > 1 else "") + ("" if shift == "none" else "_" + _file_safe(shift))
    out = out or run / VIDEO_DIR / f"{env}{tag}_grid.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    return tile(videos, out, columns=rows["target"].nunique())
