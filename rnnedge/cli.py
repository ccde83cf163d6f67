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


def _register() -> None:
    from rnnedge import evaluate as evaluate_cli
    from rnnedge.devices import cli as devices_cli
    from rnnedge.export import cli as export_cli
    from rnnedge.fleet import cli as fleet_cli
    from rnnedge.monitor import cli as monitor_cli
    from rnnedge.training import cli as training_cli

    for module in (training_cli, export_cli, evaluate_cli, devices_cli, monitor_cli, fleet_cli):
        module.register(app)


@app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of a bundle's manifest.json (generated from rnnedge/bundle.py)."""
    import json

    from rnnedge.bundle import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


_register()


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
