"""The `rnnedge` command line. Each stage keeps its commands in its own `cli.py`; this file only wires
them together and turns every RnnedgeError (and other user errors) into one line on stderr + exit code 2."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from typing import Any

import typer

from rnnedge.errors import RnnedgeError

app = typer.Typer(
    name="rnnedge", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Train recurrent models on sensor streams, export them (ONNX, TFLite), stream them on devices.",
)


# Which module registers which commands: a process imports only the stage it runs (a bedside `rnnedge monitor`
# then carries no training or export CLI in its memory); help and unknown words import them all.
STAGES = {
    "rnnedge.training.cli": ("train", "data", "import-torch"),
    "rnnedge.export.cli": ("export",),
    "rnnedge.evaluate": ("evaluate",),
    "rnnedge.devices.cli": ("devices", "bench", "report", "mcu", "tune"),
    "rnnedge.monitor.cli": ("monitor", "evaluate-alarms", "sample-csv"),
    "rnnedge.fleet.cli": ("fleet",),
}


def _register(argv: list[str]) -> None:
    import importlib

    wanted = [m for m, commands in STAGES.items() if argv[1:2] and argv[1] in commands] or list(STAGES)
    for module in wanted:
        importlib.import_module(module).register(app)


@app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of a bundle's manifest.json (generated from rnnedge/bundle.py)."""
    import json

    from rnnedge.bundle import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


_register(sys.argv)


# typer >= 0.28 writes `{bundle}`, `<path>`, `<str>` and `--help <bool>` in help; these are the words click's
# users know. Set on the built command, so every stage's options get them without a metavar of their own.
WORDS = {"str": "TEXT", "Path": "PATH", "float": "NUMBER", "int": "INTEGER"}


def finite(process: Callable, param: Any) -> Callable:
    """`process` refusing nan and inf: a float option takes them, and a NaN passes every range check."""

    def checked(ctx: typer.Context, value: object) -> object:
        result = process(ctx, value)
        if isinstance(result, float) and not math.isfinite(result):
            raise typer.BadParameter(f"{value!r} is not a finite number", ctx=ctx, param=param)
        return result

    return checked


def plain_words(command: Any) -> Any:
    """`command` (and its subcommands) with arguments shown by NAME, values by a word, flags bare, and every
    number finite."""
    for sub in getattr(command, "commands", {}).values():
        plain_words(sub)
    make_help = command.get_help_option

    def help_option(ctx: typer.Context) -> Any | None:
        option = make_help(ctx)
        if option is not None:
            option.display_type_rich = lambda ctx: None
        return option

    command.get_help_option = help_option
    for param in command.params:
        param.process_value = finite(param.process_value, param)
        described = getattr(param, "type_descriptor", None)
        if param.param_type_name == "argument":
            name = param.metavar or param.name.upper()
            param.metavar, param.display_type_rich = name, lambda ctx: None
            param.get_usage_pieces = lambda ctx, name=name: [name]
        elif getattr(param, "is_flag", False):
            param.display_type_rich = lambda ctx: None
        elif described is not None and described.is_choice:
            param.metavar = "|".join(str(getattr(c, "value", c)) for c in described.choices or ())
        elif described is not None:
            inner = described.annotation
            if described.is_list:
                inner = (getattr(inner, "__args__", None) or (str,))[0]
            word = WORDS.get(getattr(inner, "__name__", ""), "VALUE")
            param.metavar = f"{word} (repeatable)" if described.is_list else word
    return command


# Commands whose results are files (stdout only says what was written); the others' results are their output.
WRITE_FILES = {"train", "import-torch", "export", "bench", "evaluate-alarms", "sample-csv", "report", "fleet", "mcu"}


def closed_stdout(argv: list[str]) -> None:
    """Python sets sys.stdout to None when it was closed before the start (`rnnedge ... >&-`), and every print then
    vanishes: refuse at once where the results would be lost, else let the notes about written files go."""
    writes_files = argv[1:2] and (argv[1] in WRITE_FILES or (argv[1] == "monitor" and (
        "-o" in argv or "--output" in argv or any(a.startswith("--output=") for a in argv))))
    if not writes_files:
        raise RnnedgeError("standard output is closed: the results cannot be written (redirect it to a file, or "
                           "give the command's --output where it has one)")
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (the process's stdout, for its whole life)


def main() -> None:
    """Console entry point: user errors exit 2 with one line, never a traceback."""
    try:
        if sys.stdout is None:
            closed_stdout(sys.argv)
        plain_words(typer.main.get_command(app))(standalone_mode=True)
    except RnnedgeError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except BrokenPipeError:  # the reader went away (`rnnedge schema | head -1`): say so once, not at exit again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        typer.secho("error: standard output: the reader went away (Broken pipe)", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
