"""Plain text for the terminal: tables, plurals and lists of batch sizes.

Shared by the command line and ``bsopt analyze``, so that tables and notes speak alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table with right-aligned columns."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plural(n: int, one: str, many: str) -> str:
    """``one`` if ``n`` is 1, else ``many``."""
    return one if n == 1 else many


def sizes_text(batch_sizes: Iterable[int]) -> str:
    """``16, 32, 64``."""
    return ", ".join(str(b) for b in batch_sizes)


def batch_sizes_text(batch_sizes: Sequence[int]) -> str:
    """``batch size 16`` or ``batch sizes 16, 32``."""
    return f"batch {plural(len(batch_sizes), 'size', 'sizes')} {sizes_text(batch_sizes)}"
