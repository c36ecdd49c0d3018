"""Tables of the manual generated from result files: the blocks between a page's
``<!-- begin NAME table: ... -->`` and ``<!-- end NAME table -->`` markers.

Each ``benchmarks/*_tables.py`` names its page and its tables (``NAME`` -> a function that builds
the markdown from ``results/``); ``tests/test_docs.py`` checks every page is current with
:func:`fill`, and running the script rewrites the page (:func:`write`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path


def fill(page: str, tables: dict[str, Callable[[], str]]) -> str:
    """``page`` with each named block replaced by its table (a block missing from the page is an error)."""
    for name, table in tables.items():
        pattern = rf"(<!-- begin {name} table:[^\n]*-->\n).*?(<!-- end {name} table -->)"
        if not re.search(pattern, page, flags=re.S):
            raise ValueError(f"the page has no '{name}' table block")
        page = re.sub(pattern, lambda m, t=table: m.group(1) + t() + "\n" + m.group(2), page, flags=re.S)
    return page


def write(path: Path, tables: dict[str, Callable[[], str]]) -> int:
    """Rewrite ``path``'s table blocks; exit code 0."""
    path.write_text(fill(path.read_text(), tables))
    print(f"wrote {path}")
    return 0
