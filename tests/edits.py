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
