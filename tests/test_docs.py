"""Every code block of README.md, docs/ and examples/ runs as written (slow: the main job, small).

Blocks run in document order in one scratch copy of the repository's working folder (the installed .venv and the
fleet's venv linked in, examples/ copied), so a later block finds what an earlier one made, as a reader's would.
What the suite changes to keep them small is listed in SMALLER, each with its reason; a block that cannot run on
a CI machine says why in its fence (```bash no-test="why"), and the fence is the only way to leave one out."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").glob("*/README.md"))]
FENCE = re.compile(r'^```(bash|python)([^\n]*)\n(.*?)^```', flags=re.S | re.M)
LABELS = ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING", "STAND_TO_SIT",
          "SIT_TO_STAND", "SIT_TO_LIE", "LIE_TO_SIT", "STAND_TO_LIE", "LIE_TO_STAND"]

# (pattern, replacement, why): the only edits made to a block before it runs
SMALLER = [
    (r"^make test\b.*", "true", "make test is this suite itself"),
    (r"^make export\b", 'make export TRAIN_FLAGS="--epochs 2"', "the default model for 2 epochs, not 60"),
    (r"--epochs \d+", "--epochs 2", "2 epochs wherever a block trains"),
    (r"(rnnedge train (?:(?!--epochs)[^\n])*?)(\s*#|$)", r"\1 --epochs 2\2", "2 epochs wherever a block trains"),
    (r"(rnnedge export (?:(?!--precisions)[^\n])*?)(\s*#|$)", r"\1 --formats onnx --precisions int8\2",
     "one file per export after `make export`, which builds every format"),
]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    code: str
    skip: str | None  # the fence's no-test="reason"

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} ({self.language})"


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        info = match.group(2)
        skip = re.search(r'no-test="([^"]+)"', info)
        assert skip or not info.strip(), f"{path}: unknown fence words {info!r}"
        found.append(Block(path, text.count("\n", 0, match.start()) + 1, match.group(1), match.group(3),
                           skip and skip.group(1)))
    return found


def smaller(code: str) -> str:
    lines = code.replace("\\\n", " ").splitlines()  # one command per line
    for pattern, replacement, _ in SMALLER:
        lines = [re.sub(pattern, replacement, line) for line in lines]
    return "\n".join(lines) + "\n"


def test_every_block_can_be_found_and_the_rules_apply():
    every = [b for path in DOCS for b in blocks(path)]
    assert len(every) >= 10 and all(b.skip is None or len(b.skip) > 10 for b in every)
    assert smaller(".venv/bin/rnnedge train --out a  # x\n") == ".venv/bin/rnnedge train --out a --epochs 2  # x\n"
    assert smaller("rnnedge train --epochs 150 \\\n  --out b\n") == "rnnedge train --epochs 2    --out b\n"
    assert smaller("rnnedge export m.pt --out b\n") == "rnnedge export m.pt --out b --formats onnx --precisions int8\n"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A reader's working folder: the repository's environment linked in, examples copied (blocks write there),
    and the two files the import-torch example assumes the reader has (a plain-torch model and held-out CSVs)."""
    folder = tmp_path_factory.mktemp("docs")
    for name in (".venv", ".cache", "Makefile", "pyproject.toml", "requirements", "rnnedge"):
        if (ROOT / name).exists():
            (folder / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "examples", folder / "examples")
    _users_torch_model(folder)
    return folder


def _users_torch_model(folder: Path) -> None:
    import torch

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.LSTM(3, 16, batch_first=True)
            self.head = torch.nn.Linear(16, 3)

    torch.save(Net().state_dict(), folder / "model_state.pt")
    rng = np.random.default_rng(0)
    (folder / "heldout").mkdir()
    for i in range(3):
        rows = ["ax,ay,az,activity"] + [f"{a:.4f},{b:.4f},{c:.4f},{['sit', 'stand', 'walk'][(i + t // 40) % 3]}"
                                        for t, (a, b, c) in enumerate(rng.normal(size=(120, 3)))]
        (folder / "heldout" / f"r{i}.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.slow
def test_every_doc_block_runs(workdir):
    env = {**os.environ, "PATH": f"{workdir / '.venv' / 'bin'}:{os.environ['PATH']}", "COLUMNS": "160"}
    ran, skipped = [], []
    for path in DOCS:
        for block in blocks(path):
            if block.skip:
                skipped.append(f"{block}: {block.skip}")
                continue
            if block.language == "bash":
                command = ["bash", "-euo", "pipefail", "-c", smaller(block.code)]
            else:
                command = [sys.executable, "-c", block.code]
            done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, f"{block} failed:\n{block.code}\n{done.stderr[-3000:]}"
            ran.append((block, done.stdout))
    print("\n".join(["ran:", *(str(b) for b, _ in ran), "left out:", *skipped]))
    outputs = {str(b): out for b, out in ran}
    readme_python = next(out for b, out in ran if b.path.name == "README.md" and b.language == "python")
    assert readme_python.strip().splitlines()[-1] in LABELS  # the snippet streams a real sample to a label
    assert (workdir / "state.snap").is_file() and (workdir / "artifacts" / "report.html").is_file()
    events = (workdir / "alarms.jsonl").read_text().splitlines()  # a 2-epoch model: alarms or not, a summary
    assert '"event": "summary"' in events[-1]
    assert len(ran) >= 8, outputs.keys()


def test_measured_tables_are_pasted_from_the_files_their_commands_wrote(tmp_path):
    """Each paste region names the file a measuring command writes, and holds it (machine and date on top),
    not a number typed by hand; the paste script replaces a region's body with its file."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from paste_results import REGION, paste

    regions = [(path, m) for path in DOCS for m in REGION.finditer(path.read_text(encoding="utf-8"))]
    assert len(regions) >= 3
    for path, match in regions:
        source = match.group("path")
        assert re.fullmatch(r"artifacts/[\w.-]+/(bench|runtime|report|mcu|ward|fleet)\.md", source), source
        assert "- machine: " in match.group("body"), f"{path.name}: {match.group('path')} was not pasted"
    (tmp_path / "artifacts" / "x").mkdir(parents=True)
    (tmp_path / "artifacts" / "x" / "bench.md").write_text("- machine: here\n\n| a |\n|---|\n| 1 |\n")
    text = "before\n<!-- paste: artifacts/x/bench.md -->\nold\n<!-- end paste -->\nafter\n" \
           "<!-- paste: artifacts/y/bench.md -->\nkept\n<!-- end paste -->\n"
    new, missing = paste(text, tmp_path)
    assert new == "before\n<!-- paste: artifacts/x/bench.md -->\n- machine: here\n\n| a |\n|---|\n| 1 |\n" \
                  "<!-- end paste -->\nafter\n<!-- paste: artifacts/y/bench.md -->\nkept\n<!-- end paste -->\n"
    assert missing == ["artifacts/y/bench.md"]
