"""An aarch64 Linux userland under QEMU user-mode, to prove bundles run on ARM boards without having one.

Recipe (see the measured notes): Debian's `qemu-user-static` unpacked privately (no binfmt, no root install),
an arm64 CPython 3.11 assembled from Debian arm64 .debs, the aarch64 wheels of the host's pinned numpy /
onnxruntime / ai-edge-litert / msgspec / typer / rich installed by the host's pip, and an ARM
`/proc/cpuinfo` text file (onnxruntime and LiteRT segfault under QEMU without one; with `-L ROOTFS` the
emulated process reads that file instead of the host's). The rootfs is cached, keyed by a hash of the recipe.

Emulated speed means nothing: this proves the wheels load on aarch64 and compute the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import rnnedge
from rnnedge.errors import RnnedgeError

CACHE_ENV = "RNNEDGE_AARCH64_CACHE"
DEFAULT_CACHE = Path.home() / ".cache" / "rnnedge" / "aarch64"
CPU = "cortex-a72"
GLIBC_MINOR = 36  # Debian bookworm's glibc 2.36: accept manylinux wheels up to manylinux_2_36
DEBIAN_PACKAGES = (  # python3.11's runtime dependency closure (arm64), plus libstdc++ for the wheels
    "libc6", "libgcc-s1", "gcc-12-base", "libstdc++6", "zlib1g", "libbz2-1.0", "liblzma5", "libcrypt1",
    "libdb5.3", "libexpat1", "libffi8", "libssl3", "libsqlite3-0", "libuuid1", "libncursesw6", "libtinfo6",
    "libreadline8", "libnsl2", "libtirpc3", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3",
    "libkrb5support0", "libkeyutils1", "libcom-err2", "libpython3.11-minimal", "libpython3.11-stdlib",
    "python3.11-minimal", "python3.11",
)
# What rnnedge.runtime, rnnedge.bundle and the CLI (`devices`, `bench`) import; never torch.
WHEELS = ("numpy", "onnxruntime", "ai-edge-litert", "msgspec", "typer", "rich")
CPUINFO_CORE = """processor\t: {index}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

"""  # a Raspberry Pi 4's Cortex-A72 core, as its kernel describes it
SITE = "usr/lib/python3/dist-packages"  # Debian's python3.11 puts this on sys.path, as on a real board


class EmulatorUnavailable(RnnedgeError):
    """The aarch64 emulator cannot be set up here (no apt/dpkg, no arm64 packages, no network)."""


@dataclass(frozen=True)
class Recipe:
    debian_packages: tuple[str, ...]
    wheels: tuple[str, ...]  # pinned to the host's versions, so both sides run the same library code
    cpu: str
    cpuinfo: str

    @staticmethod
    def default() -> Recipe:
        return Recipe(DEBIAN_PACKAGES, tuple(_pin(name) for name in WHEELS), CPU,
                      "".join(CPUINFO_CORE.format(index=i) for i in range(4)))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def _pin(name: str) -> str:
    try:
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return name


@dataclass(frozen=True)
class Emulator:
    root: Path  # the cache entry: qemu/ and rootfs/
    cpu: str  # QEMU_CPU

    @property
    def qemu(self) -> Path:
        return self.root / "qemu" / "usr" / "bin" / "qemu-aarch64-static"

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"

    def python(self) -> list[str]:
        """The argv prefix that starts the emulated aarch64 python3.11."""
        return [str(self.qemu), "-L", str(self.rootfs), str(self.rootfs / "usr" / "bin" / "python3.11")]

    def env(self) -> dict[str, str]:
        """Environment for emulated runs: the repo's rnnedge on the path, and RNNEDGE_PYTHON so that
        code measuring a fresh process (the bench's cold start) starts it under the emulator too."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env.update(QEMU_CPU=self.cpu, PYTHONPATH=str(Path(rnnedge.__file__).resolve().parents[1]),
                   RNNEDGE_PYTHON=" ".join(self.python()), PYTHONDONTWRITEBYTECODE="1")
        return env

    def run(self, args: Sequence[str], timeout: float = 600, cwd: str | Path | None = None,
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.python(), *args], env=self.env(), cwd=cwd, capture_output=True,
                              text=True, timeout=timeout)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def ensure(cache: Path | None = None, log: Callable[[str], None] = lambda _: None) -> Emulator:
    """Return the cached emulator for the default recipe, assembling it first if needed (~1-2 min)."""
    recipe = Recipe.default()
    cache = cache or cache_dir()
    emulator = Emulator(cache / recipe.digest(), recipe.cpu)
    if (emulator.root / "recipe.json").is_file():
        return emulator
    _check_tools()
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{recipe.digest()}.", dir=cache))
    try:
        _download_debs(recipe, staging / "debs", log)
        _assemble(recipe, staging / "debs", staging, log)
        shutil.rmtree(staging / "debs")
        try:
            staging.rename(emulator.root)  # atomic: a concurrent builder's finished copy wins
        except OSError:
            if not (emulator.root / "recipe.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return emulator


def _check_tools() -> None:
    missing = [tool for tool in ("apt-get", "apt-cache", "dpkg") if shutil.which(tool) is None]
    if missing:
        raise EmulatorUnavailable(f"needs Debian's apt and dpkg to fetch qemu-user-static and arm64 python "
                                  f"(missing: {', '.join(missing)})")


def _sh(args: Sequence[str], what: str, cwd: Path | None = None) -> str:
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise EmulatorUnavailable(f"{what} failed: {' | '.join(tail)}")
    return done.stdout


def _download_debs(recipe: Recipe, debs: Path, log: Callable[[str], None]) -> None:
    if "arm64" not in _sh(["dpkg", "--print-foreign-architectures"], "dpkg").split():
        if os.geteuid() != 0:
            raise EmulatorUnavailable("arm64 Debian packages are not enabled; as root run "
                                      "`dpkg --add-architecture arm64 && apt-get update`")
        log("enabling the arm64 architecture in apt (dpkg --add-architecture arm64; apt-get update)")
        _sh(["dpkg", "--add-architecture", "arm64"], "dpkg --add-architecture arm64")
        _sh(["apt-get", "update", "-qq"], "apt-get update")
    debs.mkdir(parents=True, exist_ok=True)
    wanted = ["qemu-user-static", *(f"{name}:arm64" for name in recipe.debian_packages)]
    log(f"downloading {len(wanted)} Debian packages into {debs}")
    try:
        _sh(["apt-get", "download", "-q", *wanted], "apt-get download", cwd=debs)
    except EmulatorUnavailable:  # stale package lists: refresh once when we may
        if os.geteuid() != 0:
            raise
        _sh(["apt-get", "update", "-qq"], "apt-get update")
        _sh(["apt-get", "download", "-q", *wanted], "apt-get download", cwd=debs)


def _deb(debs: Path, name: str, arch: str) -> Path:
    found = list(debs.glob(f"{name}_*_{arch}.deb"))
    if len(found) != 1:
        raise EmulatorUnavailable(f"expected one {name}:{arch} .deb in {debs}, found {len(found)}")
    return found[0]


def _assemble(recipe: Recipe, debs: Path, root: Path, log: Callable[[str], None]) -> None:
    log("unpacking qemu-user-static and the arm64 python into the rootfs")
    _sh(["dpkg", "-x", str(_deb(debs, "qemu-user-static", "*")), str(root / "qemu")], "dpkg -x qemu")
    for other in (root / "qemu" / "usr" / "bin").iterdir():  # the package holds every target: keep ours
        if other.name != "qemu-aarch64-static":
            other.unlink()
    shutil.rmtree(root / "qemu" / "usr" / "share", ignore_errors=True)
    for name in recipe.debian_packages:
        _sh(["dpkg", "-x", str(_deb(debs, name, "arm64")), str(root / "rootfs")], f"dpkg -x {name}")
    (root / "rootfs" / "proc").mkdir()
    (root / "rootfs" / "proc" / "cpuinfo").write_text(recipe.cpuinfo)
    platforms = [f"--platform=manylinux_2_{minor}_aarch64" for minor in range(17, GLIBC_MINOR + 1)]
    log(f"installing aarch64 wheels: {' '.join(recipe.wheels)}")
    _sh([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
         "--target", str(root / "rootfs" / SITE), "--only-binary=:all:", "--python-version", "3.11",
         "--implementation", "cp", "--abi", "cp311", "--platform=manylinux2014_aarch64", *platforms,
         *recipe.wheels], "pip install (aarch64 wheels)")
    (root / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2) + "\n")  # marks it complete
