"""Bad inputs for every `rnnedge` command but the monitor (its own corpus: tests/monitor/test_cli_corpus.py): each
case is a command line a careless or hostile user could type, its exit code, and the words its one `error:` line
(or the option parser's usage box) must hold. Never a traceback, never exit 0 with nothing done."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.runtime.conftest import make_checkpoint


@dataclass(frozen=True)
class Case:
    name: str
    args: str  # after `rnnedge`; {place} is the fixture's folder, {alarms} evaluate-alarms on its fp32 HAPT bundle
    expect: str  # in the error line (rc 2) or the usage box (option parser: rc 2 too)
    closed_stdout: bool = False  # run with standard output closed (`>&-`)


class Evil:
    """A pickle that runs a command when loaded: no rnnedge command may load it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


ALARMS = "evaluate-alarms {place}/hapt --precision fp32"
CASES = [
    # the words and values a command accepts
    Case("schema-extra-argument", "schema extra", "unexpected extra argument"),
    Case("unknown-command", "frobnicate", "No such command"),
    Case("train-unknown-cell", "train --cell foo", "'foo' is not one of"),
    Case("train-unknown-task", "train --task foo", "'foo' is not one of"),
    Case("train-zero-epochs", "train --epochs 0", "--epochs"),
    Case("train-zero-hidden", "train --hidden 0", "--hidden"),
    Case("train-five-layers", "train --layers 5", "--layers"),
    Case("train-negative-rate", "train --data {place}/csv --channels a,b --label-column label --sample-rate -1",
         "sample rate"),
    Case("train-nan-rate", "train --data {place}/csv --channels a,b --label-column label --sample-rate nan",
         "not a finite number"),
    Case("train-nan-lr", "train --lr nan", "--lr"),
    Case("train-infinite-minutes", "train --max-minutes inf", "not a finite number"),
    Case("import-torch-unknown-task", "import-torch {place}/state.pt --task foo", "'foo' is not one of"),
    Case("import-torch-unknown-nonlinearity", "import-torch {place}/state.pt --nonlinearity sigmoid",
         "'sigmoid' is not one of"),
    Case("export-unknown-precision", "export {place}/model.pt --out {place}/b1 --precisions fp8", "fp8"),
    Case("export-unknown-format", "export {place}/model.pt --out {place}/b2 --formats coreml", "coreml"),
    Case("export-zero-chunk", "export {place}/model.pt --out {place}/b3 --chunk-len 0", "--chunk-len"),
    Case("export-nan-tolerance", "export {place}/model.pt --out {place}/b4 --tolerance nan", "tolerance"),
    Case("evaluate-unknown-backend", "evaluate {place}/bundle --backend foo", "'foo' is not one of"),
    Case("devices-zero-rate", "devices --sample-rate 0", "--sample-rate"),
    Case("devices-nan-rate", "devices --sample-rate nan", "--sample-rate"),
    Case("bench-unknown-backend", "bench {place}/bundle --backend foo", "'foo' is not one of"),
    Case("bench-unknown-precision", "bench {place}/bundle --precision fp8", "'fp8' is not one of"),
    Case("bench-bad-pool-sizes", "bench {place}/bundle --pool-sizes 16,x", "--pool-sizes"),
    Case("bench-zero-threads", "bench {place}/bundle --threads 0", "--threads"),
    Case("evaluate-alarms-bad-rates", "{alarms} --rates 25,fast --sweep", "--rates"),
    Case("evaluate-alarms-negative-budget", "{alarms} --max-false-alarms-per-hour -1",
         "--max-false-alarms-per-hour"),
    Case("sample-csv-negative-seconds", "sample-csv hapt:2:3 --seconds -1 --out {place}/s.csv", "--seconds"),
    # paths that are missing, of the wrong kind, or not writable
    Case("data-missing-folder", "data {place}/nowhere", "no such file or folder"),
    Case("data-empty-folder", "data {place}/empty --channels a --sample-rate 10", "no .csv files"),
    Case("train-missing-data", "train --data {place}/nowhere --channels a --sample-rate 10", "no such file"),
    Case("train-out-is-a-file", "train --out {place}/file.txt", "run folder"),
    Case("import-torch-missing-file", "import-torch {place}/nowhere.pt --channels a --sample-rate 10",
         "nowhere.pt"),
    Case("export-missing-checkpoint", "export {place}/nowhere.pt --out {place}/b5", "nowhere.pt"),
    Case("export-out-is-a-file", "export {place}/model.pt --out {place}/file.txt --formats onnx --precisions fp32",
         "file.txt"),
    Case("export-missing-key", "export {place}/model.pt --out {place}/b6 --sign {place}/nowhere.key", "nowhere.key"),
    Case("export-short-key", "export {place}/model.pt --out {place}/b7 --sign {place}/short.key", "16 bytes"),
    Case("evaluate-missing", "evaluate {place}/nowhere", "nowhere"),
    Case("evaluate-a-folder-not-a-bundle", "evaluate {place}/empty", "empty"),
    Case("evaluate-missing-data", "evaluate {place}/bundle --data {place}/nowhere", "nowhere"),
    Case("devices-not-a-bundle", "devices --bundle {place}/empty", "not a bundle"),
    Case("bench-missing", "bench {place}/nowhere --quick", "not a bundle"),
    Case("evaluate-alarms-missing", "evaluate-alarms {place}/nowhere", "not a bundle"),
    Case("evaluate-alarms-missing-point", "{alarms} --operating-point {place}/nowhere.json",
         "nowhere.json"),
    Case("evaluate-alarms-out-under-a-file", "{alarms} --out {place}/file.txt/alarms",
         "cannot write the results"),
    Case("sample-csv-out-in-missing-folder", "sample-csv hapt:2:3 --seconds 5 --out {place}/nowhere/s.csv",
         "nowhere"),
    Case("sample-csv-out-is-a-folder", "sample-csv hapt:2:3 --seconds 5 --out {place}/empty", "empty"),
    Case("report-missing", "report {place}/nowhere", "not a bundle"),
    Case("report-out-in-missing-folder", "report {place}/bundle --out {place}/nowhere/r.html", "nowhere"),
    Case("report-missing-bench", "report {place}/bundle --bench {place}/nowhere.json", "nowhere.json"),
    Case("report-bench-not-json", "report {place}/bundle --bench {place}/file.txt", "file.txt"),
    # files that are not what they claim
    Case("import-torch-random-bytes", "import-torch {place}/random.bin --channels a --sample-rate 10", "random.bin"),
    Case("import-torch-evil-pickle", "import-torch {place}/evil.pt --channels a --sample-rate 10", "evil.pt"),
    Case("export-random-bytes", "export {place}/random.bin --out {place}/b8", "random.bin"),
    Case("export-evil-pickle", "export {place}/evil.pt --out {place}/b9", "evil.pt"),
    Case("export-empty-file", "export {place}/empty.pt --out {place}/b10", "empty.pt"),
    Case("export-a-state-dict-not-a-checkpoint", "export {place}/state.pt --out {place}/b11", "state.pt"),
    Case("evaluate-evil-pickle", "evaluate {place}/evil.pt", "evil.pt"),
    Case("evaluate-edited-bundle", "evaluate {place}/edited", "1 of 2 files could not be scored (onnx fp32"),
    Case("evaluate-unsigned-bundle-with-a-key", "evaluate {place}/bundle --verify-key {place}/good.key", "sign"),
    Case("report-broken-manifest", "report {place}/broken", "manifest"),
    Case("sample-csv-not-hapt", "sample-csv subject2 --out {place}/s.csv", "hapt:"),
    Case("sample-csv-no-such-subject", "sample-csv hapt:99 --out {place}/s.csv", "hapt:99"),
    Case("sample-csv-word-subject", "sample-csv hapt:two --out {place}/s.csv", "hapt:two"),
    Case("train-one-class", "train --data {place}/one-class --channels a,b --label-column label --sample-rate 10",
         "class"),
    Case("train-unknown-channel", "train --data {place}/csv --channels a,z --label-column label --sample-rate 10",
         "z"),
    Case("train-words-for-numbers", "train --data {place}/words --channels a,b --label-column label "
         "--sample-rate 10", "words"),
    # standard output closed before the start: results that would be lost are refused before any work
    *(Case(f"closed-stdout-{args.split()[0]}", args, "standard output is closed", closed_stdout=True)
      for args in ("schema", "data", "devices", "evaluate {place}/bundle", "--help", "monitor {place}/hapt --input "
                   "hapt:2:3 --operating-point default")),
]


@pytest.fixture(scope="module")
def place(tmp_path_factory, small_bundle) -> Path:
    folder = tmp_path_factory.mktemp("cli-corpus")
    shutil.copytree(small_bundle, folder / "bundle")
    shutil.copytree(small_bundle, folder / "hapt")  # small_bundle is a HAPT-channel model: evaluate-alarms runs it
    checkpoint = make_checkpoint("gru", 8, seed=2)
    checkpoint.save(folder / "model.pt")
    import torch

    torch.save(checkpoint.state_dict, folder / "state.pt")
    (folder / "empty").mkdir()
    (folder / "file.txt").write_text("not json, not a folder\n")
    (folder / "random.bin").write_bytes(os.urandom(4096))
    (folder / "empty.pt").write_bytes(b"")
    (folder / "evil.pt").write_bytes(pickle.dumps(Evil(folder / "ran")))
    (folder / "short.key").write_bytes(b"short")
    (folder / "good.key").write_bytes(b"k" * 32)
    for name, rows in (("csv", ["0.1,0.2,x", "0.3,0.4,y"] * 20), ("one-class", ["0.1,0.2,x"] * 40),
                       ("words", ["low,high,x", "0.3,0.4,y"] * 20)):
        (folder / name).mkdir()
        for i in range(3):
            (folder / name / f"r{i}.csv").write_text("\n".join(["a,b,label", *rows]) + "\n")
    shutil.copytree(small_bundle, folder / "edited")
    onnx = next((folder / "edited").glob("*.onnx"))
    onnx.write_bytes(onnx.read_bytes()[:-1] + b"\x00")
    shutil.copytree(small_bundle, folder / "broken")
    (folder / "broken" / "manifest.json").write_text('{"schema_version": 2, "name": ')
    return folder


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_bad_command_line_gets_one_line_and_exit_2(case: Case, place: Path):
    args = case.args.replace("{alarms}", ALARMS).replace("{place}", str(place)).split()
    done = _run(args, case.closed_stdout, place)
    stderr = done.stderr
    assert "Traceback" not in stderr and done.returncode == 2, (done.returncode, stderr[-2000:])
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) <= 1, stderr
    where = errors[0] if errors else stderr  # the option parser's usage box
    assert case.expect.replace("{place}", str(place)) in where, stderr[-2000:]
    assert not (place / "ran").exists(), "a pickle ran"


def _run(args: list[str], closed_stdout: bool, cwd: Path) -> subprocess.CompletedProcess:
    """In the case's folder: a command that wrongly ran writes its default outputs there, not in the repository."""
    command = [sys.executable, "-m", "rnnedge.cli", *args]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    if not closed_stdout:
        return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)
    return subprocess.run(["bash", "-c", '"$@" >&-', "rnnedge", *command], stderr=subprocess.PIPE, text=True,
                          timeout=300, cwd=cwd, env=env)


def test_the_corpora_hold_at_least_200_cases():
    from tests.monitor.test_cli_corpus import CASES as MONITOR_CASES
    from tests.reliability.test_corpus import FLAGGED, RAISES

    assert len(CASES) + len(MONITOR_CASES) + len(RAISES) + len(FLAGGED) >= 200
