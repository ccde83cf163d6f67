"""The `rnnedge` command line. Each stage keeps its commands in its own `cli.py`; this file only wires
them together and turns every RnnedgeError (and other user errors) into one line on stderr + exit code 2."""

from __future__ import annotations

import sys

import click
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
    "rnnedge.devices.cli": ("devices", "bench", "report"),
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


def plain_words(command: click.Command) -> click.Command:
    """`command` (and its subcommands) with arguments shown by NAME, values by a word, flags bare."""
    for sub in getattr(command, "commands", {}).values():
        plain_words(sub)
    make_help = command.get_help_option

    def help_option(ctx: click.Context) -> click.Option | None:
        option = make_help(ctx)
        if option is not None:
            option.display_type_rich = lambda ctx: None
        return option

    command.get_help_option = help_option
    for param in command.params:
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


def main() -> None:
    """Console entry point: user errors exit 2 with one line, never a traceback."""
    try:
        plain_words(typer.main.get_command(app))(standalone_mode=True)
    except RnnedgeError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
