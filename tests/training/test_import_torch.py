"""`rnnedge import-torch`: models trained in plain torch (not by rnnedge) -> checkpoint -> export -> runtime, with
the runtime's outputs held to the USER's module on the same raw inputs; unsupported shapes named in the error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import typer
from torch import nn
from typer.testing import CliRunner

import rnnedge.runtime as rt
from rnnedge.data.recording import Dataset, Normalization, Recording
from rnnedge.errors import CheckpointError, DataError
from rnnedge.export.build import export_bundle
from rnnedge.training.checkpoint import Checkpoint
from rnnedge.training.cli import import_torch_command
from rnnedge.training.import_torch import ImportSpec, import_state_dict, read_json

CHANNELS = ["ax", "ay", "az", "gx", "gy", "gz"]
LABELS = ["sit", "stand", "walk", "lie"]
PARITY = 1e-5  # fp32 files against the user's module
TAG = ("--labels", ",".join(LABELS))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cli() -> typer.Typer:
    """The command as the CLI registers it (app.command("import-torch") in rnnedge/training/cli.py)."""
    app = typer.Typer()
    app.command("import-torch")(import_torch_command)
    app.callback()(lambda: None)  # keeps "import-torch" a subcommand
    return app


def run_cli(*args: str):
    return CliRunner().invoke(cli(), ["import-torch", *args])


class Tagger(nn.Module):
    """What a user writes: one recurrent module + a linear head, per-step outputs."""

    def __init__(self, rnn: nn.RNNBase, classes: int) -> None:
        super().__init__()
        self.lstm = rnn
        self.fc = nn.Linear(rnn.hidden_size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.fc(out)


class Encoder(nn.Module):
    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        self.rnn = rnn


class NestedTagger(nn.Module):
    """Other names, one level deeper: encoder.rnn.* and classifier.*."""

    def __init__(self, rnn: nn.RNNBase, classes: int) -> None:
        super().__init__()
        self.encoder = Encoder(rnn)
        self.classifier = nn.Linear(rnn.hidden_size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.encoder.rnn(x)
        return self.classifier(out)


def train_plainly(model: nn.Module, batch_first: bool, seed: int = 0, steps: int = 5) -> nn.Module:
    """A few optimizer steps on random data: plain torch, nothing from rnnedge."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        x = torch.randn(8, 20, 6) if batch_first else torch.randn(20, 8, 6)
        y = torch.randint(0, 4, (8, 20) if batch_first else (20, 8))
        loss = nn.functional.cross_entropy(model(x).reshape(-1, 4), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def random_walks(count: int = 3, steps: int = 400, seed: int = 0) -> Dataset:
    """Held-out data for export: random-walk signals, labels 1..4 in segments."""
    rng = np.random.default_rng(seed)
    recordings = [Recording(np.cumsum(rng.normal(0, 0.1, (steps, 6)), axis=0).astype(np.float32),
                            np.repeat(rng.integers(1, 5, steps // 50), 50).astype(np.int64), i, f"walk{i}")
                  for i in range(count)]
    return Dataset(recordings, CHANNELS, ["unlabelled", *LABELS], 50.0, "random walks")


def user_outputs(model: nn.Module, raw: np.ndarray, batch_first: bool) -> np.ndarray:
    """The user's module on one raw recording [T, C] in its own layout -> [T, outputs]."""
    x = torch.from_numpy(raw)[None] if batch_first else torch.from_numpy(raw)[:, None]
    with torch.no_grad():
        y = model(x)
    return (y[0] if batch_first else y[:, 0]).numpy()


def import_and_export(tmp_path, model: nn.Module, formats: tuple[str, ...], *options: str,
                      data: Dataset | None = None):
    weights = tmp_path / "user_model.pt"
    torch.save(model.state_dict(), weights)
    ckpt = tmp_path / "imported.pt"
    result = run_cli(str(weights), "--out", str(ckpt), "--channels", ",".join(CHANNELS), "--sample-rate", "50",
                     *options)
    assert result.exit_code == 0, result.output
    assert "export it with" in result.output and "--data" in result.output
    bundle = tmp_path / "bundle"
    export_bundle(ckpt, bundle, formats=formats, precisions=("fp32",), chunk_len=10,
                  eval_data=data or random_walks())
    return result.output, Checkpoint.load(ckpt), bundle


def assert_streams_like(model: nn.Module, bundle, backend: str, raw: np.ndarray, batch_first: bool,
                        user_input: np.ndarray | None = None) -> None:
    """Per-sample steps and one chunk through the runtime equal the user's module on the same inputs."""
    expected = user_outputs(model, raw if user_input is None else user_input, batch_first)
    stream = rt.load(bundle, backend=backend).stream()
    stepped = np.stack([stream.step(sample) for sample in raw])
    stream.reset()
    fed = stream.feed(raw)
    assert np.abs(stepped - expected).max() <= PARITY, backend
    assert np.abs(fed - expected).max() <= PARITY, backend


@pytest.mark.slow
def test_plain_torch_lstm_seq_first_exports_and_streams_like_the_users_module(tmp_path):
    model = train_plainly(Tagger(nn.LSTM(6, 16, num_layers=2), 4), batch_first=False)
    output, ckpt, bundle = import_and_export(tmp_path, model, ("onnx", "tflite"), *TAG)
    assert "lstm 2x16" in output and "6 inputs" in output and "4 classes" in output
    assert (ckpt.config.cell, ckpt.config.num_layers, ckpt.config.hidden_size) == ("lstm", 2, 16)
    assert ckpt.labels == LABELS and ckpt.provenance["data"] is None
    assert ckpt.provenance["imported"]["rnn"] == "lstm" and len(ckpt.provenance["imported"]["sha256"]) == 64
    raw = random_walks(1, 120, seed=7).recordings[0].signals  # not the export's evaluation data
    for backend in ("onnxruntime", "litert"):
        assert_streams_like(model, bundle, backend, raw, batch_first=False)


@pytest.mark.parametrize("rnn, options", [
    (nn.GRU(6, 12, batch_first=True), TAG),
    (nn.RNN(6, 12, nonlinearity="relu", batch_first=True), (*TAG, "--nonlinearity", "relu")),
])
def test_plain_torch_gru_and_relu_rnn_batch_first_stream_like_the_users_module(tmp_path, rnn, options):
    model = train_plainly(NestedTagger(rnn, 4), batch_first=True)
    _, ckpt, bundle = import_and_export(tmp_path, model, ("onnx",), *options)
    assert ckpt.provenance["imported"] == {**ckpt.provenance["imported"], "rnn": "encoder.rnn", "head": "classifier"}
    raw = random_walks(1, 80, seed=8).recordings[0].signals
    assert_streams_like(model, bundle, "onnxruntime", raw, batch_first=True)


def test_normalization_file_makes_the_graph_take_the_users_raw_units(tmp_path):
    """The user's module was fed (x - mean) / std; the bundle takes x and normalizes inside."""
    model = train_plainly(Tagger(nn.GRU(6, 8), 4), batch_first=False)
    mean, std = np.linspace(-1, 1, 6).astype(np.float32), np.linspace(0.5, 2, 6).astype(np.float32)
    (tmp_path / "norm.json").write_text(json.dumps({"mean": mean.tolist(), "std": std.tolist()}))
    _, ckpt, bundle = import_and_export(tmp_path, model, ("onnx",), *TAG, "--normalization",
                                        str(tmp_path / "norm.json"))
    assert np.array_equal(ckpt.normalization.mean, mean) and np.array_equal(ckpt.normalization.std, std)
    raw = random_walks(1, 60, seed=9).recordings[0].signals
    assert_streams_like(model, bundle, "onnxruntime", raw, batch_first=False, user_input=(raw - mean) / std)


class LastStepClassifier(nn.Module):
    """One class per series: the head on the last step's output."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(6, 10, batch_first=True)
        self.fc = nn.Linear(10, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.gru(x)[0][:, -1])


def test_one_way_classifier_streams_the_class_of_the_series_so_far(tmp_path):
    torch.manual_seed(0)
    model = LastStepClassifier().eval()
    walks = random_walks(count=6, steps=40, seed=3).recordings
    series = Dataset([Recording(r.signals, np.full(len(r), 1 + i % 4, np.int64), i, r.name)
                      for i, r in enumerate(walks)], CHANNELS, ["unlabelled", *LABELS], 50.0, "series")
    _, ckpt, bundle = import_and_export(tmp_path, model, ("onnx",), *TAG, "--task", "classify", "--window-len",
                                        "40", data=series)
    assert ckpt.config.task == "classify" and ckpt.provenance["train_config"] == {"window_len": 40}
    stream = rt.load(bundle, backend="onnxruntime").stream()
    raw = random_walks(1, 30, seed=4).recordings[0].signals
    fed = stream.feed(raw)
    with torch.no_grad():
        expected = np.stack([model(torch.from_numpy(raw[None, : t + 1]))[0].numpy() for t in range(len(raw))])
    assert np.abs(fed - expected).max() <= PARITY


def test_forecaster_streams_in_the_users_units(tmp_path):
    """A forecaster trained on normalized inputs predicts normalized values; the bundle gives the data's units."""
    torch.manual_seed(0)
    model = Tagger(nn.LSTM(6, 8), 12).eval()  # next 2 steps of 6 channels per step
    mean, std = np.full(6, 0.5, np.float32), np.linspace(1, 3, 6).astype(np.float32)
    (tmp_path / "norm.json").write_text(json.dumps({"mean": mean.tolist(), "std": std.tolist()}))
    _, ckpt, bundle = import_and_export(tmp_path, model, ("onnx",), "--task", "forecast", "--horizon", "2",
                                        "--normalization", str(tmp_path / "norm.json"))
    assert (ckpt.config.task, ckpt.config.horizon, ckpt.labels) == ("forecast", 2, [])
    raw = random_walks(1, 50, seed=5).recordings[0].signals
    normalized = user_outputs(model, (raw - mean) / std, batch_first=False)
    fed = rt.load(bundle, backend="onnxruntime").stream().feed(raw)
    assert np.abs(fed - (normalized * np.tile(std, 2) + np.tile(mean, 2))).max() <= PARITY


def test_bidirectional_classify_matches_the_usual_h_n_head():
    """A bidirectional classifier on cat(h_n[-2], h_n[-1]) is rnnedge's window model."""
    torch.manual_seed(0)
    rnn, fc = nn.LSTM(6, 8, num_layers=2, batch_first=True, bidirectional=True), nn.Linear(16, 4)
    state = {**{f"lstm.{k}": v for k, v in rnn.state_dict().items()}, "fc.weight": fc.weight, "fc.bias": fc.bias}
    ckpt = import_state_dict(state, channels=CHANNELS, sample_rate_hz=50, task="classify")
    x = torch.randn(3, 25, 6)
    with torch.no_grad():
        _, (h_n, _) = rnn(x)
        expected = fc(torch.cat([h_n[-2], h_n[-1]], dim=-1))
        got = ckpt.build_model().window_logits(x)
    assert torch.allclose(got, expected, atol=1e-6) and ckpt.labels == ["class0", "class1", "class2", "class3"]


def test_forecast_head_must_cover_channels_times_horizon():
    torch.manual_seed(0)
    state = nn.ModuleDict({"gru": nn.GRU(6, 8), "out": nn.Linear(8, 12)}).state_dict()
    ckpt = import_state_dict(state, channels=CHANNELS, sample_rate_hz=10, task="forecast", horizon=2)
    assert (ckpt.config.output_size, ckpt.config.horizon, ckpt.labels) == (12, 2, [])
    with pytest.raises(CheckpointError, match="head out gives 12 outputs; a forecast of 6 channel"):
        import_state_dict(state, channels=CHANNELS, sample_rate_hz=10, task="forecast")


def modules(**children: nn.Module) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return nn.ModuleDict(children).state_dict()


def lstm_fc(**extra: nn.Module) -> dict[str, torch.Tensor]:
    return modules(lstm=nn.LSTM(6, 16), **extra, fc=nn.Linear(16, 4))


@pytest.mark.parametrize("state, options, message", [
    (modules(lstm=nn.LSTM(6, 16, proj_size=8), fc=nn.Linear(8, 4)), {}, "module lstm: an LSTM with proj_size"),
    (modules(rnn=nn.GRU(6, 16, bias=False), fc=nn.Linear(16, 4)), {}, "module rnn: rnn.bias_ih_l0 is missing: bias"),
    (modules(lstm=nn.LSTM(6, 16), fc=nn.Linear(16, 4, bias=False)), {}, "fc: an nn.Linear without bias"),
    (modules(lstm=nn.LSTM(6, 16), fc1=nn.Linear(16, 32), fc2=nn.Linear(32, 4)), {},
     "layers besides recurrent module lstm and one nn.Linear head: fc1 (Linear 16->32); fc2"),
    (lstm_fc(norm=nn.LayerNorm(16)), {}, "layers besides recurrent module lstm and one nn.Linear head: norm (weight"),
    (lstm_fc(bn=nn.BatchNorm1d(16)), {}, "bn (weight 16, bias 16, running_mean 16"),
    (modules(lstm1=nn.LSTM(6, 16), lstm2=nn.LSTM(16, 16), fc=nn.Linear(16, 4)), {},
     "more than one recurrent module (lstm1, lstm2)"),
    (modules(lstm=nn.LSTM(6, 16, bidirectional=True), fc=nn.Linear(16, 4)), {"task": "classify"},
     "head fc takes 16 inputs, but recurrent module lstm gives 32"),
    (modules(lstm=nn.LSTM(6, 16, bidirectional=True), fc=nn.Linear(32, 4)), {},
     "recurrent module lstm is bidirectional: only task classify"),
    (modules(lstm=nn.LSTM(6, 8, num_layers=5), fc=nn.Linear(8, 4)), {}, "recurrent module lstm: num_layers must be"),
    (modules(fc=nn.Linear(6, 4)), {}, "no recurrent module: no key ends in weight_ih_l0"),
    (modules(lstm=nn.LSTM(6, 16)), {}, "no nn.Linear head after recurrent module lstm"),
    (lstm_fc(), {"channels": CHANNELS[:5]}, "5 channel(s) given (ax, ay, az, gx, gy), but recurrent module lstm "
                                            "takes 6 inputs"),
    (lstm_fc(), {"labels": LABELS[:3]}, "3 label(s) given (sit, stand, walk), but head fc gives 4 outputs"),
    (lstm_fc(), {"nonlinearity": "relu"}, "nonlinearity relu is for nn.RNN, but recurrent module lstm is a LSTM"),
    (lstm_fc(), {"window_len": 32}, "window length 32: only a classify model takes one"),
    (lstm_fc(), {"normalization": Normalization(np.zeros(6, np.float32), np.zeros(6, np.float32))},
     "std finite and positive"),
])
def test_unsupported_shapes_name_the_module(state, options, message):
    kwargs = {"channels": CHANNELS, "sample_rate_hz": 50.0, **options}
    with pytest.raises(CheckpointError) as error:
        import_state_dict(state, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_pickled_module_is_refused_with_the_state_dict_hint(tmp_path):
    torch.save(Tagger(nn.LSTM(6, 8), 4), tmp_path / "whole.pt")
    result = run_cli(str(tmp_path / "whole.pt"), "--channels", ",".join(CHANNELS), "--sample-rate", "50",
                     "--out", str(tmp_path / "ckpt.pt"))
    assert isinstance(result.exception, CheckpointError)
    assert "save model.state_dict(), not the module" in str(result.exception)
    assert not (tmp_path / "ckpt.pt").exists()


def test_a_training_checkpoint_dict_with_one_state_dict_is_taken(tmp_path):
    model = Tagger(nn.GRU(6, 8), 4)
    optimizer = torch.optim.Adam(model.parameters())
    torch.save({"epoch": 3, "model_state_dict": model.state_dict(), "optimizer": optimizer.state_dict()},
               tmp_path / "train.pt")
    result = run_cli(str(tmp_path / "train.pt"), "--channels", ",".join(CHANNELS), "--sample-rate", "50",
                     "--out", str(tmp_path / "ckpt.pt"))
    assert result.exit_code == 0, result.output
    assert Checkpoint.load(tmp_path / "ckpt.pt").config.cell == "gru"


def test_spec_file_gives_the_options_and_the_command_line_overrides_it(tmp_path):
    torch.save(lstm_fc(), tmp_path / "user.pt")
    spec = {"channels": CHANNELS, "sample_rate_hz": 25, "labels": "a,b,c,d",
            "normalization": {"mean": [1.0] * 6, "std": [2.0] * 6}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = run_cli(str(tmp_path / "user.pt"), "--spec", str(tmp_path / "spec.json"), "--labels", ",".join(LABELS),
                     "--out", str(tmp_path / "ckpt.pt"))
    assert result.exit_code == 0, result.output
    ckpt = Checkpoint.load(tmp_path / "ckpt.pt")
    assert (ckpt.sample_rate_hz, ckpt.labels, ckpt.normalization.std.tolist()) == (25.0, LABELS, [2.0] * 6)


def test_spec_with_an_unknown_key_is_refused(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"channels": CHANNELS, "sample_rate_hz": 50, "labelz": LABELS}))
    with pytest.raises(DataError, match=r"spec.json: unknown key\(s\) labelz \(known: channels"):
        ImportSpec.from_dict(read_json(path), str(path))
    torch.save(lstm_fc(), tmp_path / "user.pt")
    result = run_cli(str(tmp_path / "user.pt"), "--spec", str(path))
    assert isinstance(result.exception, DataError) and "labelz" in str(result.exception)


def test_missing_channels_and_bad_files_are_one_line_errors(tmp_path):
    torch.save(lstm_fc(), tmp_path / "user.pt")
    (tmp_path / "junk.pt").write_text("not torch")
    result = run_cli(str(tmp_path / "user.pt"), "--sample-rate", "50")
    assert isinstance(result.exception, DataError) and "--channels" in str(result.exception)
    result = run_cli(str(tmp_path / "junk.pt"), "--channels", ",".join(CHANNELS), "--sample-rate", "50")
    assert isinstance(result.exception, CheckpointError) and "not a file written by torch.save" in str(result.exception)


@pytest.mark.slow
def test_plain_torch_model_from_the_real_cli_to_a_stream(tmp_path):
    """The issue's acceptance path with the installed CLI only: import-torch -> export --data -> runtime."""
    import subprocess
    import sys

    torch.manual_seed(3)
    user = Tagger(nn.LSTM(6, 16, num_layers=2), len(LABELS))  # seq-first, trained a little in plain torch
    optimizer = torch.optim.Adam(user.parameters(), lr=1e-2)
    for _ in range(5):
        loss = user(torch.randn(40, 4, 6)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(user.state_dict(), tmp_path / "user.pt")
    rng = np.random.default_rng(0)
    (tmp_path / "held").mkdir()
    for i in range(3):
        walk = np.cumsum(rng.normal(0, 0.1, (120, 6)), axis=0)
        rows = ["ax,ay,az,gx,gy,gz,label"] + [",".join(f"{v:.5f}" for v in row) + f",{LABELS[(t // 30) % 4]}"
                                              for t, row in enumerate(walk)]
        (tmp_path / "held" / f"r{i}.csv").write_text("\n".join(rows) + "\n")

    def rnnedge(*args: str) -> None:
        result = subprocess.run([sys.executable, "-m", "rnnedge.cli", *args], capture_output=True, text=True,
                                timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": ""})
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr

    rnnedge("import-torch", str(tmp_path / "user.pt"), "--channels", ",".join(CHANNELS), "--sample-rate", "50",
            *TAG, "--out", str(tmp_path / "model.pt"))
    rnnedge("export", str(tmp_path / "model.pt"), "--out", str(tmp_path / "bundle"), "--data", str(tmp_path / "held"),
            "--label-column", "label", "--formats", "onnx,tflite", "--precisions", "fp32", "--chunk-len", "10")
    x = np.loadtxt(tmp_path / "held" / "r0.csv", delimiter=",", skiprows=1, usecols=range(6), dtype=np.float32)
    with torch.no_grad():
        expected = user(torch.from_numpy(x)[:, None])[:, 0].numpy()  # the user's own seq-first module
    for backend in ("onnxruntime", "litert"):
        stream = rt.load(tmp_path / "bundle", backend=backend).stream()
        np.testing.assert_allclose(np.stack([stream.step(s) for s in x]), expected, atol=PARITY)
