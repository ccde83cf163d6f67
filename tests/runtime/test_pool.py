"""Pools: membership, per-stream reset, partial ticks that touch no other stream, and concurrent producers
whose streams never mix."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import rnnedge.runtime as rt

TOL = 1e-5  # batched vs single-stream calls may round differently; a mixed-up state differs by far more


@pytest.fixture(scope="module")
def model(bundle) -> rt.Model:
    return rt.load(bundle, backend="onnxruntime")


def _alone(model: rt.Model, x: np.ndarray) -> np.ndarray:
    return model.stream().feed(x)


def test_membership(model):
    pool = model.pool(capacity=2)
    pool.add("a")
    pool.add("b")
    with pytest.raises(ValueError, match="already"):
        pool.add("a")
    with pytest.raises(ValueError, match="full"):
        pool.add("c")
    pool.remove("a")
    assert pool.ids == ["b"] and "a" not in pool and len(pool) == 1
    with pytest.raises(KeyError, match="no stream 'a'"):
        pool.step({"a": np.zeros(6)})
    with pytest.raises(KeyError):
        pool.remove("a")


def test_partial_ticks_remove_and_reset(model, many):
    xs = many[:, :120]
    pool = model.pool(capacity=4)
    for i in range(3):
        pool.add(i)
    outs = {i: [] for i in range(3)}
    for t in range(120):
        ids = [i for i in range(3) if (t + i) % 3]  # each stream skips every third tick, at its own phase
        for i, y in pool.step({i: xs[i, t] for i in ids}).items():
            outs[i].append(y)
    for i in range(3):
        kept = [t for t in range(120) if (t + i) % 3]
        np.testing.assert_allclose(np.stack(outs[i]), _alone(model, xs[i, kept]), atol=TOL)
    before = pool.state(2)
    pool.remove(0)  # stream 2 moves into row 0: its state moves with it
    np.testing.assert_array_equal(pool.state(2), before)
    pool.reset(1)
    assert not pool.state(1).any() and pool.state(2).any()
    pool.add(0)  # a new stream with a used id starts from zero
    assert not pool.state(0).any()


def test_concurrent_producers_never_mix(model, many):
    xs = many[:, :200]
    pool = model.pool(capacity=8)
    results = {i: [] for i in range(len(xs))}
    for i in results:
        pool.add(i)

    def producer(ids: list[int]) -> None:  # each thread owns some streams and steps them as fast as it can
        for t in range(xs.shape[1]):
            for i, y in pool.step({i: xs[i, t] for i in ids}).items():
                results[i].append(y)

    threads = [threading.Thread(target=producer, args=([i, i + 3],)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in results:
        np.testing.assert_allclose(np.stack(results[i]), _alone(model, xs[i]), atol=TOL)


def test_submit_and_tick(model, many):
    xs = many[:4, :60]
    pool = model.pool(capacity=4)
    for i in range(len(xs)):
        pool.add(i)
    threads = [threading.Thread(target=lambda i=i: [pool.submit(i, s) for s in xs[i]]) for i in range(len(xs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outs = {i: [] for i in range(len(xs))}
    while ticked := pool.tick():
        assert len(ticked) <= len(xs)  # one sample per stream per tick
        for i, y in ticked.items():
            outs[i].append(y)
    for i in outs:
        np.testing.assert_allclose(np.stack(outs[i]), _alone(model, xs[i]), atol=TOL)


def test_litert_pool_loops_but_agrees(bundle, reference):
    pool = rt.load(bundle, backend="litert").pool(capacity=4)
    for i in range(len(reference["x"])):
        pool.add(i)
    out = np.stack([pool.step_array(reference["x"][:, t]) for t in range(100)], axis=1)
    np.testing.assert_allclose(out, reference["y"][:, :100], atol=1e-4)


def test_remove_drops_the_queued_samples_and_a_new_stream_of_that_id_starts_clean(model, signals):
    pool = model.pool(capacity=4)
    pool.add("a")
    pool.add("b")
    for t in range(3):
        pool.submit("a", signals[t])
        pool.submit("b", signals[t])
    pool.tick()  # one each; two still queued for each
    pool.remove("a")
    out = pool.tick()
    assert set(out) == {"b"}  # a's queued samples went with it
    pool.add("a")
    again = pool.step({"a": signals[0]})["a"]
    np.testing.assert_allclose(again, _alone(model, signals[:1])[0], atol=TOL)  # from a zero state, nothing queued
    assert set(pool.tick()) == {"b"}


def test_two_threads_compute_what_one_does(bundle, signals):
    one = rt.load(bundle, backend="onnxruntime", threads=1).stream().feed(signals[:200])
    two = rt.load(bundle, backend="onnxruntime", threads=2).stream().feed(signals[:200])
    np.testing.assert_allclose(two, one, atol=TOL)  # intra-op threads split the work, not the arithmetic's meaning
