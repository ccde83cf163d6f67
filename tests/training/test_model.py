import numpy as np
import pytest
import torch

from rnnedge.training.config import CELLS, ModelConfig, with_variant
from rnnedge.training.model import RecurrentModel


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 3])
def test_chunked_stateful_forward_equals_full_sequence(cell, layers):
    torch.manual_seed(0)
    model = RecurrentModel(ModelConfig(cell=cell, input_size=6, hidden_size=16, num_layers=layers,
                                       output_size=5, dropout=0.3)).eval()
    x = torch.randn(3, 120, 6)
    full, full_state = model(x)
    state, outputs = None, []
    for size in (1, 7, 50, 1, 61):  # uneven chunks, including single steps
        step_out, state = model(x[:, sum(o.shape[1] for o in outputs):][:, :size], state)
        outputs.append(step_out)
    torch.testing.assert_close(torch.cat(outputs, 1), full, atol=1e-5, rtol=0)
    torch.testing.assert_close(state, full_state, atol=1e-5, rtol=0)
    assert state.shape == (3, model.config.state_size)


def test_state_layout_matches_torch_hidden_states():
    model = RecurrentModel(ModelConfig(cell="lstm", hidden_size=4, num_layers=2, output_size=3)).eval()
    x = torch.randn(2, 5, 6)
    _, state = model(x)
    _, (h, c) = model.rnn(x)
    parts = state.view(2, 2, 2, 4)  # batch, (h, c), layers, hidden
    torch.testing.assert_close(parts[:, 0].transpose(0, 1), h)
    torch.testing.assert_close(parts[:, 1].transpose(0, 1), c)


def test_config_rejects_what_cannot_stream():
    with pytest.raises(ValueError, match="need the future"):
        ModelConfig(bidirectional=True, task="tag")
    with pytest.raises(ValueError, match="num_layers"):
        ModelConfig(num_layers=5)


def test_bidirectional_window_and_forecast_rollout_shapes():
    bi = RecurrentModel(ModelConfig(cell="gru", hidden_size=8, output_size=4, task="classify", bidirectional=True))
    assert bi.window_logits(torch.randn(2, 30, 6)).shape == (2, 4)
    fc = RecurrentModel(ModelConfig(cell="gru", hidden_size=8, output_size=12, task="forecast", horizon=2))
    assert fc.rollout(torch.randn(2, 30, 6), steps=10).shape == (2, 10, 6)


def test_a_residual_forecast_with_a_silent_head_is_persistence():
    """Residual: the head's output is a change added to the latest input, each step of the horizon; only
    forecasts have one."""
    fc = RecurrentModel(ModelConfig(cell="lstm", input_size=3, hidden_size=8, output_size=6, task="forecast",
                                    horizon=2, residual=True))
    torch.nn.init.zeros_(fc.head.weight)
    torch.nn.init.zeros_(fc.head.bias)
    x = torch.randn(2, 30, 3)
    assert torch.equal(fc(x)[0], torch.cat([x, x], -1))
    with pytest.raises(ValueError, match="residual"):
        ModelConfig(task="tag", residual=True)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_remember_for_spreads_the_kept_gates_time_scales_up_to_the_series_length(cell):
    """Chrono init: every layer and direction's forget (LSTM) or update (GRU) gate bias is log U(1, steps - 1),
    the LSTM's input gate its opposite; the other gates keep PyTorch's init."""
    torch.manual_seed(0)
    config = ModelConfig(cell, 3, 64, num_layers=2, output_size=4, task="classify", bidirectional=True)
    model = RecurrentModel(config)
    before = {name: value.clone() for name, value in model.rnn.named_parameters()}
    model.remember_for(300)
    h, rnn = config.hidden_size, model.rnn
    for name, value in rnn.named_parameters():
        if not name.startswith("bias_ih"):
            continue
        hh = getattr(rnn, name.replace("bias_ih", "bias_hh"))
        kept = value[h:2 * h] + hh[h:2 * h]
        assert kept.min() >= 0 and kept.max() <= np.log(299) + 1e-6 and kept.max() > np.log(100)
        if cell == "lstm":
            assert torch.equal(value[:h] + hh[:h], -kept)
        assert torch.equal(value[2 * h:], before[name][2 * h:])  # LSTM g and o, GRU n: as they were
        if cell == "gru":
            assert torch.equal(value[:h], before[name][:h])  # the reset gate: as it was


def test_a_vanilla_rnn_has_no_gate_to_keep():
    torch.manual_seed(0)
    model = RecurrentModel(ModelConfig("rnn_tanh", 3, 8, output_size=4, task="classify"))
    before = [value.clone() for value in model.parameters()]
    model.remember_for(300)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def _change_forecaster(channels: int = 2) -> RecurrentModel:
    torch.manual_seed(0)
    return RecurrentModel(ModelConfig(cell="lstm", input_size=channels, hidden_size=8, num_layers=2,
                                      output_size=2 * channels, task="forecast", horizon=2, residual=True,
                                      change_input=True)).eval()


def test_the_change_input_streams_in_any_chunks_and_a_fresh_stream_starts_with_no_change():
    """The change since the last sample: the state carries that sample (normalized) and a seen flag per channel;
    a fresh state's first change is 0, not the level (a spike at every cold start otherwise)."""
    model = _change_forecaster()
    series = np.random.default_rng(0).standard_normal((300, 2)).cumsum(0)
    model.fit_change_scale([series])
    np.testing.assert_allclose(model.change_scale.numpy(), 1 / np.diff(series, axis=0).std(0), rtol=1e-5)
    x = torch.from_numpy(series[None, :60].astype(np.float32))
    full, full_state = model(x)
    state, outputs = None, []
    for start, end in ((0, 1), (1, 18), (18, 19), (19, 60)):
        y, state = model(x[:, start:end], state)
        outputs.append(y)
    torch.testing.assert_close(torch.cat(outputs, 1), full, atol=1e-5, rtol=0)
    torch.testing.assert_close(state, full_state, atol=1e-5, rtol=0)
    assert state.shape == (1, model.config.state_size) and model.config.previous_size == 4
    recurrent, last, seen = model.config.state_parts  # the layout every exporter slices alike
    assert (recurrent.stop, last.stop, seen.stop) == (model.config.state_size - 4, model.config.state_size - 2,
                                                      model.config.state_size)
    torch.testing.assert_close(state[0, last], x[0, -1])
    torch.testing.assert_close(state[0, seen], torch.ones(2))
    seen_first = torch.cat([torch.zeros(1, model.config.state_size - 4), x[:, 0], torch.ones(1, 2)], 1)
    torch.testing.assert_close(model(x[:, :1])[0], model(x[:, :1], seen_first)[0])  # as if x0 came before x0
    moved = model(x[:, :1], torch.cat([seen_first[:, :-4], x[:, 0] - 1, torch.ones(1, 2)], 1))[0]
    assert not torch.allclose(moved, model(x[:, :1])[0])  # a seen sample before it is a change


def test_the_change_input_is_a_forecasts_and_named_by_its_variant():
    assert with_variant(ModelConfig(task="forecast"), "gru+change").change_input
    assert with_variant(ModelConfig(task="forecast"), "gru+change").variant == "gru+change"
    assert not with_variant(ModelConfig(task="forecast"), "lstm").change_input
    recurrent, last, seen = ModelConfig(task="forecast").state_parts  # no change input: the state is recurrent
    assert recurrent.stop == last.stop == seen.stop == ModelConfig(task="forecast").state_size
    with pytest.raises(ValueError, match="change input is a forecast's"):
        with_variant(ModelConfig(task="tag"), "lstm+change")


def test_the_slow_init_is_a_gated_classify_models_and_named_by_its_variant():
    slow = with_variant(ModelConfig(task="classify"), "gru+slow")
    assert slow.slow_init and slow.cell == "gru" and slow.variant == "gru+slow"
    assert not with_variant(slow, "gru").slow_init
    for task, cell in (("tag", "lstm"), ("forecast", "gru"), ("classify", "rnn_tanh")):
        with pytest.raises(ValueError, match="the slow init keeps a classify model's gates open"):
            ModelConfig(task=task, cell=cell, slow_init=True)
