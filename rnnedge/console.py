"""The one console the commands print tables on: full width where there is no terminal (a log, a file, a pipe),
so a table is never cut to 80 columns there; a terminal (or COLUMNS) sets the width itself."""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPE_WIDTH = 200


def table_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    sized = "COLUMNS" in os.environ or (stream is not None and stream.isatty())
    return Console(stderr=stderr, width=None if sized else PIPE_WIDTH)
