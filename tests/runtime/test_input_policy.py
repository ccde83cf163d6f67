"""The input policy: wrong shapes and dtypes raise InputError naming the expected shape; NaN/Inf raise (and
leave the stream untouched) or are held at the last good value and flagged."""

from __future__ import annotations

import numpy as np
import pytest

import rnnedge.runtime as rt
from rnnedge.errors import InputError


@pytest.fixture(scope="module")
def model(bundle) -> rt.Model:
    return rt.load(bundle)


@pytest.mark.parametrize("bad, message", [
    (np.zeros(5, np.float32), r"expected shape \(6,\), got \(5,\)"),
    (np.zeros((1, 6), np.float32), r"expected shape \(6,\), got \(1, 6\)"),
    (np.array(["1"] * 6), r"shape \(6,\), got dtype <U1"),
    (np.zeros(6, np.complex64), "got dtype complex64"),
    ([[1.0, 2.0], [3.0]], "ragged"),
])
def test_step_refuses_wrong_shape_or_dtype(model, bad, message):
    with pytest.raises(InputError, match=message):
        model.stream().step(bad)


def test_feed_and_pool_name_the_expected_shape(model):
    with pytest.raises(InputError, match=r"Stream.feed: expected shape \(T, 6\), got \(10, 3\)"):
        model.stream().feed(np.zeros((10, 3), np.float32))
    pool = model.pool(capacity=2)
    pool.add("a")
    with pytest.raises(InputError, match=r"Pool.step\['a'\]: expected shape \(6,\)"):
        pool.step({"a": np.zeros(7)})
    with pytest.raises(InputError, match=r"Pool.step_array: expected shape \(1, 6\), got \(2, 6\)"):
        pool.step_array(np.zeros((2, 6), np.float32))


def test_other_real_dtypes_are_converted(model, signals):
    expected = model.stream().step(signals[0])
    np.testing.assert_array_equal(model.stream().step(signals[0].astype(np.float64)), expected)
    np.testing.assert_array_equal(model.stream().step(list(signals[0].astype(float))), expected)
    assert model.stream().step(np.arange(6)).shape == (model.outputs,)


def test_nan_raises_and_leaves_the_stream_untouched(model, signals):
    stream = model.stream()
    stream.feed(signals[:20])
    state, steps = stream.state, stream.steps
    bad = signals[20].copy()
    bad[2] = np.nan
    with pytest.raises(InputError, match="non-finite value nan at channel 2"):
        stream.step(bad)
    chunk = signals[20:30].copy()
    chunk[4, 1] = np.inf
    with pytest.raises(InputError, match="step 4, channel 1"):
        stream.feed(chunk)
    np.testing.assert_array_equal(stream.state, state)
    assert stream.steps == steps
    np.testing.assert_array_equal(stream.step(signals[20]), model.stream().feed(signals[:21])[-1])


def test_hold_repeats_the_last_good_value_and_flags_it(model, signals):
    x = signals[:40].copy()
    x[10, 0] = np.nan  # one channel of one step
    x[25:28] = np.inf  # a whole-sample gap of three steps
    held_x = signals[:40].copy()
    held_x[10, 0] = held_x[9, 0]
    held_x[25:28] = held_x[24]
    expected = model.stream().feed(held_x)

    stepper, flags = model.stream(nan_policy="hold"), []
    for sample in x:
        out = stepper.step(sample)
        flags.append(bool(stepper.last_held[0]))
        np.testing.assert_allclose(out, expected[len(flags) - 1], atol=1e-6)
    assert np.flatnonzero(flags).tolist() == [10, 25, 26, 27]

    feeder = model.stream(nan_policy="hold")
    np.testing.assert_allclose(feeder.feed(x), expected, atol=1e-6)
    assert np.flatnonzero(feeder.last_held).tolist() == [10, 25, 26, 27]


def test_hold_before_any_good_value_uses_the_training_mean(model):
    stream = model.stream(nan_policy="hold")
    out = stream.step(np.full(6, np.nan))
    np.testing.assert_array_equal(out, model.stream().step(model.mean))


def test_pool_hold_is_per_stream(model, signals):
    pool = model.pool(capacity=2, nan_policy="hold")
    pool.add("a")
    pool.add("b")
    pool.step({"a": signals[0], "b": signals[1]})
    out = pool.step({"a": np.full(6, np.nan), "b": signals[2]})
    assert pool.last_held == ["a"]
    alone = model.stream()
    alone.step(signals[0])
    np.testing.assert_allclose(out["a"], alone.step(signals[0]), atol=1e-5)
    raising = model.pool(capacity=2)  # nan_policy="raise"
    raising.add("x")
    raising.add("y")
    with pytest.raises(InputError, match=r"Pool.submit\['x'\]: non-finite"):  # the producer hears of it
        raising.submit("x", np.full(6, np.nan))
    with pytest.raises(InputError, match=r"Pool.step\['y'\]: non-finite value inf at channel 3"):
        raising.step({"x": signals[0], "y": np.array([0, 0, 0, np.inf, 0, 0])})
    assert not raising.state("x").any()  # the tick did not happen, for any stream


def test_bad_nan_policy(model):
    with pytest.raises(ValueError, match="nan_policy"):
        model.stream(nan_policy="zero")
