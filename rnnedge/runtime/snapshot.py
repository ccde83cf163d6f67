"""Stream snapshots: the hidden state on disk, so a killed process resumes where it left off.

File layout (version 2): MAGIC, one line of JSON header (version, the sha256 of the model file that produced
the state, state size, channels, steps), the payload (little-endian float32: state, then the last good sample
that the "hold" input policy repeats), then the hex sha256 of everything before it. Every field is typed and
checked, the checksum covers the header too (an edited step count is refused like a flipped bit), the payload
length must match the header, and a non-finite state is neither written nor read back. So a snapshot from
another model, of another version, torn, edited or poisoned is refused with SnapshotError. Writes are atomic
(write-then-rename, rnnedge.atomic). The same bytes travel in memory (`encode_snapshot` / `decode_snapshot`) where
the state is kept elsewhere, e.g. in Flink keyed state (rnnedge.fleet), with the same checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NamedTuple

import msgspec
import numpy as np

from rnnedge.atomic import write_bytes_atomic
from rnnedge.digest import sha256_bytes
from rnnedge.errors import SnapshotError

MAGIC = b"RNNEDGE-SNAPSHOT\n"
VERSION = 2  # 2: typed header, checksum over header + payload (1 hashed the payload only)
_LE_F32 = np.dtype("<f4")
_DIGEST_LEN = 64  # hex sha256
_MAX_HEADER = 1024


class _Header(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    model_sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
    state_size: Annotated[int, msgspec.Meta(ge=0)]
    channels: Annotated[int, msgspec.Meta(ge=1)]
    steps: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class _Versioned(msgspec.Struct):
    version: Any = None


class Snapshot(NamedTuple):  # not a dataclass: `dataclasses` costs the device 0.1 MB
    state: np.ndarray  # [state_size] float32
    last_good: np.ndarray  # [channels] float32
    steps: int  # time steps the stream had taken


def save_snapshot(path: str | Path, model_sha256: str, snapshot: Snapshot) -> Path:
    """Write atomically; SnapshotError (with the path) for a non-finite state or a place that cannot be written."""
    data = encode_snapshot(model_sha256, snapshot, where=str(path))
    if not Path(path).parent.is_dir():  # a typo in the folder is an error, not a new folder
        raise SnapshotError(f"{path}: cannot write snapshot ({Path(path).parent} is not a folder)")
    try:
        return write_bytes_atomic(path, data)
    except OSError as exc:  # a parent that is a file gives FileExistsError: say what it means
        reason = f"{exc.filename} is not a folder" if isinstance(exc, FileExistsError) else exc.strerror or exc
        raise SnapshotError(f"{path}: cannot write snapshot ({reason})") from None


def encode_snapshot(model_sha256: str, snapshot: Snapshot, where: str = "snapshot") -> bytes:
    """The snapshot file's bytes (in memory: state kept elsewhere, e.g. Flink keyed state); SnapshotError for a
    non-finite state."""
    state, last_good = snapshot.state.astype(_LE_F32), snapshot.last_good.astype(_LE_F32)
    if not (np.isfinite(state).all() and np.isfinite(last_good).all()):
        raise SnapshotError(f"{where}: refusing to save a non-finite state")
    header = _Header(VERSION, model_sha256, state.size, last_good.size, int(snapshot.steps))
    body = MAGIC + msgspec.json.encode(header) + b"\n" + state.tobytes() + last_good.tobytes()
    return body + sha256_bytes(body).encode()


def load_snapshot(path: str | Path, model_sha256: str, state_size: int, channels: int) -> Snapshot:
    size = _max_size(state_size, channels)
    try:
        with open(path, "rb") as handle:
            data = handle.read(size + 1)  # a huge file is refused without reading it all
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read snapshot ({exc.strerror or exc})") from None
    return decode_snapshot(data, model_sha256, state_size, channels, where=str(path))


def _max_size(state_size: int, channels: int) -> int:
    return len(MAGIC) + _MAX_HEADER + 4 * (state_size + channels) + _DIGEST_LEN


def decode_snapshot(data: bytes, model_sha256: str, state_size: int, channels: int,
                    where: str = "snapshot") -> Snapshot:
    """A snapshot's bytes (encode_snapshot, or a file's) -> Snapshot, refused with SnapshotError as a file is."""
    if not data.startswith(MAGIC):
        raise SnapshotError(f"{where}: not an rnnedge stream snapshot")
    if len(data) > _max_size(state_size, channels):
        raise SnapshotError(f"{where}: corrupt snapshot (longer than a snapshot of this model can be)")
    line, newline, rest = data[len(MAGIC):].partition(b"\n")
    try:
        version = msgspec.json.decode(line, type=_Versioned).version
    except msgspec.DecodeError:
        raise SnapshotError(f"{where}: corrupt snapshot header") from None
    if version != VERSION:
        raise SnapshotError(f"{where}: snapshot version {version!r:.20} is not supported (this rnnedge reads "
                            f"{VERSION}; start the stream afresh)")
    body, digest = data[:-_DIGEST_LEN], data[-_DIGEST_LEN:]
    if not newline or len(rest) < _DIGEST_LEN or sha256_bytes(body).encode() != digest:
        raise SnapshotError(f"{where}: corrupt snapshot (checksum mismatch: torn, truncated or edited)")
    try:
        header = msgspec.json.decode(line, type=_Header)
    except msgspec.DecodeError as exc:
        raise SnapshotError(f"{where}: invalid snapshot header: {exc}") from None
    if header.model_sha256 != model_sha256:
        raise SnapshotError(f"{where}: snapshot of another model (sha256 {header.model_sha256[:12]}..., this model "
                            f"is {model_sha256[:12]}...): its state means nothing here")
    if (header.state_size, header.channels) != (state_size, channels):
        raise SnapshotError(f"{where}: snapshot of a state of size {header.state_size} with {header.channels} "
                            f"channels; this model has {state_size} and {channels}")
    payload = rest[:-_DIGEST_LEN]
    if len(payload) != 4 * (state_size + channels):
        raise SnapshotError(f"{where}: corrupt snapshot (payload of {len(payload)} bytes, the header says "
                            f"{4 * (state_size + channels)})")
    values = np.frombuffer(payload, _LE_F32).astype(np.float32)
    if not np.isfinite(values).all():
        raise SnapshotError(f"{where}: snapshot holds a non-finite state; refusing to resume from it")
    return Snapshot(values[:state_size].copy(), values[state_size:].copy(), header.steps)
