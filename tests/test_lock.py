"""The lock is the environment: what is installed equals requirements/*.txt, and pyproject.toml's ranges are ranges
the locks tested (every locked version inside them, every package they name locked)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parents[1]
LOCKS = {"main": ROOT / "requirements" / "main.txt", "fleet": ROOT / "requirements" / "fleet.txt"}
FLEET_VENV = Path(os.environ.get("RNNEDGE_FLEET_VENV", ROOT / ".cache" / "venv-fleet"))
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def locked(path: Path) -> dict[str, str]:
    """name -> version of every pin in a pip-compile lock (markers for other platforms still count as locked)."""
    return {canonicalize_name(m[1]): m[2] for line in path.read_text().splitlines() if (m := PIN.match(line))}


def declared() -> dict[str, list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = [Requirement(r) for r in project["dependencies"]]
    extras = [Requirement(r) for extra in ("train", "export", "dev") for r in project["optional-dependencies"][extra]]
    return {"main": base + extras, "fleet": base}


def installed_in(python: str) -> dict[str, str]:
    code = ("import json, importlib.metadata as m\n"
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout
    return {canonicalize_name(k): v for k, v in json.loads(out).items()}


def differences(lock: dict[str, str], installed: dict[str, str]) -> list[str]:
    found = [f"{name}: installed {installed.get(name, 'nothing')}, locked {version}"
             for name, version in lock.items() if installed.get(name, version) != version]
    found += [f"{name}: locked but not installed" for name in lock if name not in installed]
    return found


@pytest.mark.parametrize("env", ["main", "fleet"])
def test_every_declared_package_is_locked_inside_its_range(env):
    lock = locked(LOCKS[env])
    for requirement in declared()[env]:
        name = canonicalize_name(requirement.name)
        assert name in lock, f"pyproject.toml names {name}, {LOCKS[env].name} does not lock it: make lock"
        assert requirement.specifier.contains(Version(lock[name]), prereleases=True), (
            f"{name} {lock[name]} (locked in {LOCKS[env].name}) is outside pyproject.toml's {requirement.specifier}")


def test_the_main_environment_is_the_lock():
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    lock = locked(LOCKS["main"])
    problems = differences(lock, installed)
    assert not problems, "the environment is not the lock (make install):\n" + "\n".join(problems)
    extra = sorted(set(installed) - set(lock) - {"rnnedge", "pip"})
    assert not extra, f"installed but not in the lock: {extra}"


def test_the_fleet_environment_is_the_lock():
    python = FLEET_VENV / "bin" / "python"
    if not python.exists():
        if os.environ.get("RNNEDGE_FLEET_REQUIRED"):
            pytest.fail(f"no fleet environment at {FLEET_VENV} (make fleet-env)")
        pytest.skip(f"no fleet environment at {FLEET_VENV} (make fleet-env)")
    installed = installed_in(str(python))
    lock = locked(LOCKS["fleet"])
    assert not differences(lock, installed), "\n".join(differences(lock, installed))
    assert not sorted(set(installed) - set(lock) - {"rnnedge", "pip"})


def test_the_check_sees_a_drift():
    lock = {"numpy": "2.4.6", "msgspec": "0.23.0"}
    assert differences(lock, {"numpy": "2.4.6", "msgspec": "0.23.0"}) == []
    assert differences(lock, {"numpy": "2.4.6", "msgspec": "0.24.0"}) == [
        "msgspec: installed 0.24.0, locked 0.23.0"]
    assert differences(lock, {"numpy": "2.4.6"}) == ["msgspec: locked but not installed"]
