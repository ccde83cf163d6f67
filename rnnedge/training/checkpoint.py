"""Checkpoints: weights + config + normalization + labels + provenance, in a file that
`torch.load(weights_only=True)` reads, so loading one can never execute pickled code."""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rnnedge.atomic import write_bytes_atomic
from rnnedge.data.recording import Normalization
from rnnedge.errors import CheckpointError
from rnnedge.training.config import ModelConfig
from rnnedge.training.model import RecurrentModel

FORMAT = "rnnedge-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    normalization: Normalization
    channels: list[str]
    labels: list[str]
    sample_rate_hz: float
    provenance: dict = field(default_factory=dict)  # data source + sha256, splits, train config, metrics

    def build_model(self) -> RecurrentModel:
        model = RecurrentModel(self.config)
        model.load_state_dict(self.state_dict)
        return model.eval()

    def save(self, path: str | Path) -> Path:
        payload = {
            "format": FORMAT, "version": VERSION, "config": self.config.to_dict(),
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in self.state_dict.items()},
            "normalization": self.normalization.to_dict(), "channels": list(self.channels),
            "labels": list(self.labels), "sample_rate_hz": float(self.sample_rate_hz),
            "provenance": self.provenance,
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        return write_bytes_atomic(path, buffer.getvalue())

    @staticmethod
    def load(path: str | Path) -> Checkpoint:
        file = Path(path)
        if not file.is_file():
            raise CheckpointError(f"{file}: no such checkpoint")
        if not zipfile.is_zipfile(file):  # torch.save always writes a zip archive
            raise CheckpointError(f"{file}: corrupt or not a checkpoint (not a torch archive)")
        try:
            payload = torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise CheckpointError(f"{file}: refused: it carries pickled code (only weights-only checkpoints "
                                  "load)") from None
        except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
            raise CheckpointError(f"{file}: corrupt or not a checkpoint ({str(exc).splitlines()[0]})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise CheckpointError(f"{file}: not an rnnedge checkpoint")
        if payload.get("version") != VERSION:
            raise CheckpointError(f"{file}: checkpoint version {payload.get('version')} is not supported")
        try:
            checkpoint = Checkpoint(
                ModelConfig.from_dict(payload["config"]), payload["state_dict"],
                Normalization.from_dict(payload["normalization"]), payload["channels"], payload["labels"],
                payload["sample_rate_hz"], payload.get("provenance", {}),
            )
            checkpoint.build_model()  # shapes must match the config
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"{file}: incomplete or inconsistent checkpoint ({str(exc).splitlines()[0]})") \
                from None
        return checkpoint
