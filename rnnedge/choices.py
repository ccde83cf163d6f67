"""Option values the CLI accepts, from the registries the code itself uses: `--help` lists them and anything
else is refused with the list (typer checks an Enum), so the words and the code cannot drift apart."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import get_args

from rnnedge.bundle import Precision as _Precision
from rnnedge.runtime.model import BACKENDS


def choice(name: str, values: tuple[str, ...]) -> type[Enum]:
    return Enum(name, {value: value for value in values}, type=str)


Backend = choice("Backend", BACKENDS)
# The file a bed's monitor streams by default, and so what `rnnedge devices` recommends: dynamic-range int8 is 4x
# smaller than fp32 and within a point of it, and `make export` chooses the alarm's operating point on it.
STREAMING_PRECISION = "int8"
Precision = choice("Precision", get_args(_Precision))


def verify_key_option():  # noqa: ANN201 (a typer OptionInfo)
    """`--verify-key FILE` (or RNNEDGE_VERIFY_KEY): the bundle must be signed with that key (`rnnedge export
    --sign`); setting the variable in a device's environment makes every command that loads a bundle require it."""
    import typer

    return typer.Option(None, "--verify-key", envvar="RNNEDGE_VERIFY_KEY", help="Key file: refuse the bundle unless "
                        "it is signed with this key (rnnedge export --sign). The environment variable "
                        "RNNEDGE_VERIFY_KEY does the same for every command.")


def key_from(path: Path | None) -> bytes | None:
    from rnnedge.bundle import read_key

    return None if path is None else read_key(path)
