"""The CLI imports only the stage a command belongs to, so STAGES must name every command each stage registers."""

import importlib

import typer

from rnnedge.cli import STAGES


def test_stages_list_exactly_the_commands_each_module_registers():
    for module, commands in STAGES.items():
        app = typer.Typer()
        importlib.import_module(module).register(app)
        assert tuple(c.name for c in app.registered_commands) == commands, module
