"""What every demo shares: its final table kept in the run folder, so that running a finished demo again says so
in one line and shows that table, instead of evaluating, exporting (a new SavedModel version each time) and
predicting again."""

from __future__ import annotations

import json
import os
from typing import Any

from kzoo.config import config_to_dict
from kzoo.utils import files

#: The file in a demo's output_dir that holds its final table and the settings it was made with.
DEMO_RESULTS_FILE = "demo_results.json"


def finished_demo(config: Any, fresh: bool = False) -> tuple[str, list[tuple]] | None:
    """The stored ``(title, rows)`` of a demo that has finished with exactly ``config``'s settings (any change,
    or ``fresh``, runs it again), after printing one line that says so; else ``None``."""
    path = os.path.join(config.output_dir, DEMO_RESULTS_FILE)
    if fresh or not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            stored = json.load(f)
        if stored["config"] != json.loads(json.dumps(config_to_dict(config))):
            return None
        title, rows = stored["title"], [tuple(row) for row in stored["rows"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    print(
        f"kzoo demo: {config.name} has already finished in {config.output_dir}; its results below "
        "(--fresh runs it again)"
    )
    return title, rows


def save_demo(config: Any, title: str, rows: list[tuple]) -> None:
    """Keep a finished demo's table (and the settings it was made with) for :func:`finished_demo`."""
    record = {"config": config_to_dict(config), "title": title, "rows": [list(map(str, row)) for row in rows]}
    files.write_json(os.path.join(config.output_dir, DEMO_RESULTS_FILE), record)
