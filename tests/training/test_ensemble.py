"""Folding members into one model (training/ensemble.py): exactly their mean, for every cell and depth, streamed
step by step as well as whole; and what cannot fold is refused."""

import numpy as np
import pytest
import torch

from rnnedge.data.recording import Normalization
from rnnedge.training.checkpoint import Checkpoint
from rnnedge.training.config import CELLS, ModelConfig
from rnnedge.training.ensemble import fold, member_seeds
from rnnedge.training.model import RecurrentModel


def member(config: ModelConfig, seed: int) -> Checkpoint:
    torch.manual_seed(seed)
    model = RecurrentModel(config)
    with torch.no_grad():
        for weight in model.parameters():  # not the init's small values: every block must land in its place
            weight.uniform_(-0.8, 0.8)
    norm = Normalization(np.zeros(2, np.float32), np.ones(2, np.float32))
    return Checkpoint(config, model.state_dict(), norm, ["a", "b"], [], 10.0, {"train_config": {"seed": seed}})


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
def test_the_folded_model_outputs_the_members_mean_and_streams_like_them(cell, layers):
    config = ModelConfig(cell=cell, input_size=2, hidden_size=5, num_layers=layers, output_size=3, task="forecast")
    members = [member(config, seed) for seed in (0, 1, 2)]
    folded = fold(members)
    assert folded.config.hidden_size == 15 and folded.config.state_size == 3 * members[0].config.state_size
    assert [m["seed"] for m in folded.provenance["members"]] == [0, 1, 2]
    x = torch.randn(4, 30, 2)
    with torch.no_grad():
        mean = sum(m.build_model()(x)[0] for m in members) / 3
        whole, _ = folded.build_model()(x)
        model, state, steps = folded.build_model(), None, []
        for t in range(x.shape[1]):  # one sample a call, the state carried
            y, state = model(x[:, t:t + 1], state)
            steps.append(y)
    assert torch.allclose(whole, mean, atol=1e-5) and torch.allclose(torch.cat(steps, 1), mean, atol=1e-5)


def test_members_that_differ_or_look_both_ways_are_refused():
    config = ModelConfig(cell="gru", input_size=2, hidden_size=4, num_layers=1, output_size=3, task="classify")
    with pytest.raises(ValueError, match="share"):
        fold([member(config, 0), member(ModelConfig(**{**config.to_dict(), "hidden_size": 6}), 1)])
    both = ModelConfig(**{**config.to_dict(), "bidirectional": True})
    with pytest.raises(ValueError, match="unidirectional"):
        fold([member(both, 0), member(both, 1)])


@pytest.mark.parametrize("cell", CELLS)
def test_classifiers_normalized_otherwise_fold_into_the_first_ones_normalization(cell):
    """A member normalized otherwise (a final fit's on training + validation beside the validated one) is re-expressed
    in the first's normalization: each member's outputs, and the fold's, are what they were on the raw data. A
    forecast's outputs are in its normalization's units: refused."""
    from dataclasses import replace

    from rnnedge.training.ensemble import renormalized

    config = ModelConfig(cell=cell, input_size=2, hidden_size=4, num_layers=2, output_size=3, task="classify")
    first = member(config, 0)
    other = replace(member(config, 1), normalization=Normalization(np.array([5.0, -2.0], np.float32),
                                                                   np.array([3.0, 0.5], np.float32)))
    raw = np.random.default_rng(0).normal(2.0, 4.0, (3, 20, 2)).astype(np.float32)

    def outputs(checkpoint: Checkpoint) -> torch.Tensor:
        with torch.no_grad():
            return checkpoint.build_model()(torch.from_numpy(checkpoint.normalization.apply(raw)))[0]

    moved = renormalized(other, first.normalization)
    assert moved.normalization.to_dict() == first.normalization.to_dict()
    assert torch.allclose(outputs(moved), outputs(other), atol=1e-4)
    assert torch.allclose(outputs(fold([first, other])), (outputs(first) + outputs(other)) / 2, atol=1e-4)
    forecast = ModelConfig(**{**config.to_dict(), "task": "forecast", "output_size": 2})
    with pytest.raises(ValueError, match="normalization"):
        fold([member(forecast, 0), replace(member(forecast, 1), normalization=other.normalization)])


def test_runs_with_different_seeds_share_no_member():
    assert member_seeds(0, 2) == [0, 1] and member_seeds(1, 2) == [2, 3] and member_seeds(5, 1) == [5]
