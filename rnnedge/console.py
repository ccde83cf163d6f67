"""The one console the commands print tables on: a terminal sets its own width; anywhere else (a log, a file, a
pipe) the width is at least PIPE_WIDTH (or COLUMNS, if wider), so a table is never cut to 80 columns there."""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPE_WIDTH = 200


def table_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    if stream is not None and stream.isatty():
        return Console(stderr=stderr)
    columns = os.environ.get("COLUMNS", "")
    return Console(stderr=stderr, width=max(PIPE_WIDTH, int(columns) if columns.isdigit() else 0))
