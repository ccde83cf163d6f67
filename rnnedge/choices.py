"""Option values the CLI accepts, from the registries the code itself uses: `--help` lists them and anything
else is refused with the list (typer checks an Enum), so the words and the code cannot drift apart."""

from __future__ import annotations

from enum import Enum
from typing import get_args

from rnnedge.bundle import Precision as _Precision
from rnnedge.runtime.model import BACKENDS


def choice(name: str, values: tuple[str, ...]) -> type[Enum]:
    return Enum(name, {value: value for value in values}, type=str)


Backend = choice("Backend", BACKENDS)
Precision = choice("Precision", get_args(_Precision))
