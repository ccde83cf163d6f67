"""Edits of parsed JSON documents (manifests, snapshots) for the bad-input corpora."""

from __future__ import annotations

from collections.abc import Callable


def set_at(path: str, value) -> Callable[[dict], None]:
    """An edit that sets document[a][b]... = value (path "a.b", list indexes as numbers)."""

    def edit(document: dict) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        for p in parents:
            document = document[p]
        document[last] = value

    return edit


def write_manifest_json(folder, manifest: dict, rehash: bool = True) -> None:
    """Write an edited manifest dict into a bundle folder, its checksum recomputed (so what lies beyond the
    checksum is what a case tests), or left as it was (`rehash=False`: a hand edit, which the checksum refuses)."""
    import json
    from pathlib import Path

    from rnnedge.bundle import manifest_checksum

    if rehash and manifest.get("checksum") is not None:
        manifest["checksum"] = manifest_checksum(manifest)
    (Path(folder) / "manifest.json").write_text(json.dumps(manifest))
