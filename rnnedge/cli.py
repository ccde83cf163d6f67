"""The `rnnedge` command line. Each stage keeps its commands in its own `cli.py`; this file only wires
them together and turns every RnnedgeError (and other user errors) into one line on stderr + exit code 2."""

from __future__ import annotations

import sys

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
    "rnnedge.devices.cli": ("devices", "bench"),
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


def main() -> None:
    """Console entry point: user errors exit 2 with one line, never a traceback."""
    try:
        app(standalone_mode=True)
    except RnnedgeError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
