"""Paste measured results into the docs: every region of a Markdown file between
`<!-- paste: PATH -->` and `<!-- end paste -->` is replaced by the file PATH (relative to the repository), which
the command that measured it wrote (`rnnedge bench`: bench.md, runtime.md; `rnnedge evaluate-alarms`: report.md),
with the machine and date in its first lines. A region whose file is missing is left as it is, and said so.

    python scripts/paste_results.py README.md docs/*.md     (make readme)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REGION = re.compile(r"(<!-- paste: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- end paste -->)", flags=re.S)


def paste(text: str, root: Path) -> tuple[str, list[str]]:
    """`text` with each region's body replaced by its file; and what was not found."""
    missing = []

    def fill(match: re.Match) -> str:
        source = root / match.group("path")
        if not source.is_file():
            missing.append(match.group("path"))
            return match.group(0)
        return match.group(1) + source.read_text(encoding="utf-8").rstrip("\n") + "\n" + match.group(4)

    return REGION.sub(fill, text), missing


def main(paths: list[str]) -> int:
    root = Path(__file__).resolve().parents[1]
    for name in paths:
        path = Path(name)
        text = path.read_text(encoding="utf-8")
        new, missing = paste(text, root)
        for source in missing:
            print(f"{path}: {source} not found (run the command that writes it): left as it was", file=sys.stderr)
        if new != text:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(new, encoding="utf-8")
            tmp.replace(path)
            print(f"{path}: pasted")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
