"""The emulator recipe: cached by a hash of everything that goes into the rootfs, and a clear reason when
the machine cannot build it (the aarch64 test then skips with that reason)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rnnedge.devices import emulate


def test_recipe_hash_covers_packages_wheels_and_cpu() -> None:
    recipe = emulate.Recipe.default()
    assert recipe.digest() == emulate.Recipe.default().digest()
    assert any(w.startswith("onnxruntime==") for w in recipe.wheels)  # pinned to this machine's versions
    assert "CPU part\t: 0xd08" in recipe.cpuinfo
    for changed in (replace(recipe, cpu="cortex-a76"), replace(recipe, wheels=(*recipe.wheels, "psutil")),
                    replace(recipe, debian_packages=recipe.debian_packages[:-1])):
        assert changed.digest() != recipe.digest()


def test_no_apt_is_a_clear_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without apt-get and dpkg
    with pytest.raises(emulate.EmulatorUnavailable, match="needs Debian's apt and dpkg"):
        emulate.ensure(cache=tmp_path / "cache")
