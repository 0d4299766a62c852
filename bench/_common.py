"""Shared by the benchmarks (run as `PYTHONPATH=. python bench/NAME.py`): the two-column result table."""

from __future__ import annotations

from collections.abc import Sequence


def print_table(rows: Sequence[tuple[str, str]], header: str = "measure") -> None:
    """Print `(name, value)` rows as a left-aligned two-column table under `header` and `value`."""
    width = max(len(k) for k, _ in rows)
    print(f"{header:<{width}}  value")
    print(f"{'-' * width}  {'-' * 40}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
