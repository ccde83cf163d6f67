"""Stream snapshots: the hidden state on disk, so a killed process resumes where it left off.

File layout: MAGIC, one line of JSON header, then the payload (little-endian float32: state, then the last
good sample that the "hold" input policy repeats). The header binds the snapshot to the sha256 of the model
file that produced the state and carries the payload's sha256, so a snapshot from another model, of another
version, or torn, is refused with SnapshotError. Writes are atomic (write-then-rename, rnnedge.atomic).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnedge.atomic import write_bytes_atomic
from rnnedge.digest import sha256_bytes
from rnnedge.errors import SnapshotError

MAGIC = b"RNNEDGE-SNAPSHOT\n"
VERSION = 1
_LE_F32 = np.dtype("<f4")


@dataclass(frozen=True)
class Snapshot:
    state: np.ndarray  # [state_size] float32
    last_good: np.ndarray  # [channels] float32
    steps: int  # time steps the stream had taken


def save_snapshot(path: str | Path, model_sha256: str, snapshot: Snapshot) -> Path:
    payload = snapshot.state.astype(_LE_F32).tobytes() + snapshot.last_good.astype(_LE_F32).tobytes()
    header = {"version": VERSION, "model_sha256": model_sha256, "state_size": snapshot.state.size,
              "channels": snapshot.last_good.size, "steps": snapshot.steps,
              "payload_sha256": sha256_bytes(payload)}
    return write_bytes_atomic(path, MAGIC + json.dumps(header).encode() + b"\n" + payload)


def load_snapshot(path: str | Path, model_sha256: str, state_size: int, channels: int) -> Snapshot:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read snapshot ({exc.strerror})") from None
    if not data.startswith(MAGIC):
        raise SnapshotError(f"{path}: not an rnnedge stream snapshot")
    line, _, payload = data[len(MAGIC):].partition(b"\n")
    try:
        header = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SnapshotError(f"{path}: corrupt snapshot header") from None
    if not isinstance(header, dict):
        raise SnapshotError(f"{path}: corrupt snapshot header")
    if header.get("version") != VERSION:
        raise SnapshotError(f"{path}: snapshot version {header.get('version')} is not supported "
                            f"(this rnnedge reads {VERSION})")
    if header.get("model_sha256") != model_sha256:
        theirs = str(header.get("model_sha256"))[:12]
        raise SnapshotError(f"{path}: snapshot of another model (sha256 {theirs}..., this model is "
                            f"{model_sha256[:12]}...): its state means nothing here")
    if (header.get("state_size"), header.get("channels")) != (state_size, channels) or \
            sha256_bytes(payload) != header.get("payload_sha256"):
        raise SnapshotError(f"{path}: corrupt snapshot (payload does not match its header)")
    values = np.frombuffer(payload, _LE_F32).astype(np.float32)
    return Snapshot(values[:state_size].copy(), values[state_size:].copy(), int(header.get("steps", 0)))
