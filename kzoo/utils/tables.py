"""The one text-table printer (CLI results, benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(title: str, rows: Sequence[Sequence[object]], right_align: bool = False) -> str:
    """Rows (the first is the header) as an aligned text table under ``title``; ``right_align`` right-aligns every
    column but the first (numbers)."""
    cells = [[str(c) for c in row] for row in rows]
    if not cells:
        return title
    widths = [max(len(row[i]) if i < len(row) else 0 for row in cells) for i in range(max(map(len, cells)))]
    rule = "-+-".join("-" * w for w in widths)
    lines = [title, rule]
    for index, row in enumerate(cells):
        row = row + [""] * (len(widths) - len(row))
        lines.append(
            " | ".join(
                c.rjust(w) if right_align and i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
            ).rstrip()
        )
        if index == 0:
            lines.append(rule)
    lines.append(rule)
    return "\n".join(lines)
