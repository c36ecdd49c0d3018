"""MkDocs hook: the committed result files (figures, CSVs, videos under ``results/``) become part of
the site, so the manual shows the real figures and ``mkdocs build --strict`` fails on a link to a
result that does not exist."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
KINDS = {".png", ".svg", ".csv", ".json", ".mp4"}


def on_files(files: Files, config) -> Files:  # noqa: ANN001
    for path in sorted((ROOT / "results").rglob("*")):
        if path.is_file() and path.suffix in KINDS:
            rel = path.relative_to(ROOT).as_posix()
            if files.get_file_from_path(rel) is None:
                files.append(File(rel, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files
