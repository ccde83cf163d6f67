"""Fleet messages: one JSON object per line, a chunk of one bed's samples (e.g. 0.5 s = 25 samples at 50 Hz).

    {"bed": "ward3-12", "t": [12.00, 12.02, ...], "x": [[ax, ay, az, gx, gy, gz], ...]}

"bed" names the stream (a non-empty string of at most MAX_BED_CHARS); "x" holds the samples in raw sensor units,
in the bundle's channel order; "t" (optional) their timestamps in seconds, one per sample (without it each sample
is the bed's next slot); "sent" (optional) the gateway's wall clock (time.time()), for latency measurements.
Other keys are ignored.

A ward's gateway sends one tick of all its beds as one line (a "block", cheaper than a JSON line per bed: the
samples are one base64 float32 block, decoded without parsing numbers):

    {"beds": ["ward3-01", ...], "t0": [12.00, ...], "dt": 0.02, "n": 25, "x": "<base64: beds x n x channels,
     float32 little-endian>"}

"t0" (optional, with "dt") gives each bed's first timestamp, the others follow at "dt" seconds; without it the
samples are untimed. A block that is not such an object is one bad message; a bed in it that is not allowed is a
bad message of that bed, the others go on.

A message that is not such an object (not JSON, no bed, "x" not a list, "t" of another length, a bed not in the
allowed list) is a bad message: counted and reported, never fed. Inside a good message each sample becomes one
monitor Row, exactly as a CSV line does in `rnnedge monitor` (rnnedge.monitor.sources): a sample of the wrong
length takes no slot, an unreadable value is NaN (held by the runtime), an unusable timestamp is dropped, and
late, missing and jumping timestamps follow the monitor's policy. A message whose samples are all readable
(numbers, finite in float32, usable timestamps) goes to the monitor as one chunk (`samples`: arrays for
Monitor.feed_chunk, which gives the same records as those rows one by one).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from collections.abc import Collection
from typing import NamedTuple

import numpy as np

from rnnedge.monitor.sources import MAX_TIME_S, Row, usable_time

MAX_BED_CHARS = 200
MAX_SAMPLES = 50_000  # per message (1000 s at 50 Hz): a larger one is a gateway bug, refused before any work
MAX_BLOCK_BEDS = 100_000  # beds in one block


class Message(NamedTuple):
    bed: str
    t: list | np.ndarray | None  # timestamps as sent (validated per sample by rows()); a block's: float64
    x: list | np.ndarray  # samples as sent; a block's: float32 (T, channels)
    received: float  # wall clock (time.time()) when the job parsed it: latency measurements
    sent: float | None  # the gateway's wall clock, if it put one in the line as "sent" (benchmarks)


def parse(line: str, received: float, beds: Collection[str] | None = None) -> tuple[Message | None, str | None,
                                                                                      str | None]:
    """(message, None, None) or (None, bed or None, why it is bad)."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        return None, None, f"not JSON ({str(exc)[:80]})"
    if not isinstance(obj, dict):
        return None, None, f"not a JSON object ({type(obj).__name__})"
    bed = obj.get("bed")
    if not isinstance(bed, str) or not 0 < len(bed) <= MAX_BED_CHARS:
        return None, None, f"'bed' must be a non-empty string of at most {MAX_BED_CHARS} characters"
    if beds is not None and bed not in beds:
        return None, bed, "unknown bed (not in the allowed list)"
    x, t = obj.get("x"), obj.get("t")
    if not isinstance(x, list) or not x:
        return None, bed, "'x' must be a non-empty list of samples"
    if len(x) > MAX_SAMPLES:
        return None, bed, f"{len(x)} samples in one message (at most {MAX_SAMPLES})"
    if t is not None and (not isinstance(t, list) or len(t) != len(x)):
        return None, bed, "'t' must be a list with one timestamp per sample"
    sent = obj.get("sent")
    return Message(bed, t, x, received, float(sent) if type(sent) in (int, float) else None), None, None


def parse_line(line: str, received: float, beds: Collection[str] | None = None
               ) -> tuple[list[Message], list[tuple[str | None, str]]]:
    """A line's good messages (one, or a block's one per bed) and its bad ones as (bed or None, why)."""
    if not line.lstrip().startswith('{"beds"'):
        message, bed, why = parse(line, received, beds)
        return ([message], []) if message is not None else ([], [(bed, why)])
    try:
        obj = json.loads(line)
        names, n, data = obj["beds"], obj["n"], base64.b64decode(obj["x"], validate=True)
        if not (isinstance(names, list) and 0 < len(names) <= MAX_BLOCK_BEDS and type(n) is int and
                0 < n <= MAX_SAMPLES and all(isinstance(b, str) and 0 < len(b) <= MAX_BED_CHARS for b in names)
                and len(set(names)) == len(names)):
            raise ValueError("'beds' must be distinct bed names and 'n' the samples per bed")
        size = len(names) * n * 4
        if not data or len(data) % size:
            raise ValueError(f"'x' holds {len(data)} bytes, not beds x n x channels float32 values")
        x = np.frombuffer(data, "<f4").reshape(len(names), n, -1).astype(np.float32)
        times = None
        if "t0" in obj:
            t0, dt = np.asarray(obj["t0"], np.float64), float(obj["dt"])
            if t0.shape != (len(names),) or not 0 < dt < 3600:
                raise ValueError("'t0' must give one first timestamp per bed, 'dt' the interval in seconds")
            times = t0[:, None] + np.arange(n) * dt
    except (ValueError, KeyError, TypeError, RecursionError, binascii.Error) as exc:
        return [], [(None, f"not a block of beds ({str(exc)[:120]})")]
    sent = obj.get("sent")
    sent = float(sent) if type(sent) in (int, float) else None
    good, bad = [], []
    for i, bed in enumerate(names):
        if beds is not None and bed not in beds:
            bad.append((bed, "unknown bed (not in the allowed list)"))
        else:
            good.append(Message(bed, None if times is None else times[i], x[i], received, sent))
    return good, bad


def key_group(key: int, max_parallelism: int) -> int:
    """The Flink key group of an INT key of a PyFlink keyed stream: PyFlink keys by `Row(key)`, whose hashCode is
    62 + key, and Flink's KeyGroupRangeAssignment.assignToKeyGroup takes MathUtils.murmurHash of it (checked against
    the JVM in tests/fleet/test_flink.py)."""
    def i32(x: int) -> int:
        x &= 0xFFFFFFFF
        return x - (1 << 32) if x >= 1 << 31 else x

    def rotl(x: int, r: int) -> int:
        x &= 0xFFFFFFFF
        return i32((x << r) | (x >> (32 - r)))

    h = rotl(i32((62 + key) * 0xCC9E2D51), 15)
    h = i32(rotl(i32(h * 0x1B873593), 13) * 5 + 0xE6546B64) ^ 4
    h &= 0xFFFFFFFF  # bitMix: unsigned shifts
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h = i32(h ^ (h >> 16))
    h = h if h >= 0 else (-h if h != -(1 << 31) else 0)
    return h % max_parallelism


def spread_keys(shards: int, max_parallelism: int) -> list[int]:
    """`shards` keys whose key groups are spread evenly over max_parallelism (0, step, 2 x step, ...): every
    parallelism that divides `shards` gets as many shards per subtask (keys 0..15 were measured to give 11 of 16
    shards to one of two subtasks, idling the other)."""
    step, keys = max_parallelism // shards, []
    for group in range(0, max_parallelism, step):
        key = 0
        while key_group(key, max_parallelism) != group:
            key += 1
        keys.append(key)
    return keys


def shard(bed: str, shards: int) -> int:
    """The bed's shard: stable across processes and runs (Python's hash() is salted per process)."""
    return zlib.crc32(bed.encode("utf-8", "surrogatepass")) % shards


def samples(message: Message, channels: list[str]) -> tuple[np.ndarray, np.ndarray | None] | list[Row]:
    """(values (T, channels) float32, t (T,) or None) when every sample is readable, as rows() would find it;
    else rows()."""
    x, t = message.x, message.t
    if isinstance(x, np.ndarray):  # a block's: numbers already
        times = None if t is None else np.asarray(t, np.float64)
        if x.shape[1] == len(channels) and np.isfinite(x).all() and (times is None or (np.abs(times) <= MAX_TIME_S
                                                                                         ).all()):
            return x, times
        return rows(message._replace(x=x.tolist(), t=None if t is None else times.tolist()), channels)
    numbers = {float, int}
    # bools, strings and nulls would be converted by numpy; rows() reads them as unreadable
    if {type(v) for sample in x if type(sample) is list for v in sample} <= numbers and \
            (t is None or {type(v) for v in t} <= numbers):
        try:
            values = np.array(x, np.float64)
            times = None if t is None else np.array(t, np.float64)
        except (ValueError, OverflowError):  # ragged, or an integer beyond float64
            values = times = None
        if values is not None and values.shape == (len(x), len(channels)):
            with np.errstate(over="ignore"):
                values = values.astype(np.float32)
            if np.isfinite(values).all() and (times is None or (np.abs(times) <= MAX_TIME_S).all()):
                return values, times  # |nan| <= x is False: a non-finite time fails that test too
    return rows(message, channels)


def rows(message: Message, channels: list[str]) -> list[Row]:
    """The message's samples as monitor Rows (see the module docstring)."""
    out = []
    for i, sample in enumerate(message.x):
        where = f"bed {message.bed}: sample {i} of a message"
        t = None if message.t is None else _number(message.t[i])
        if not isinstance(sample, list) or len(sample) != len(channels):
            size = len(sample) if isinstance(sample, list) else type(sample).__name__
            out.append(Row(None, None, f"{where}: {size} values, expected {len(channels)} ({','.join(channels)})"))
            continue
        with np.errstate(over="ignore"):  # beyond float32: +-inf, unreadable like any non-finite value
            values = np.array([_number(v) for v in sample], np.float32)
        if not usable_time(t):
            out.append(Row(t, values, f"{where}: unusable timestamp {message.t[i]!r:.40}"))
            continue
        bad = [channels[c] for c in np.flatnonzero(~np.isfinite(values))]
        out.append(Row(t, values, f"{where}: unreadable or non-finite {', '.join(bad)}" if bad else None))
    return out


def _number(value) -> float:
    """A JSON number as a float; anything else (null, a string, a bool) is unreadable: NaN."""
    if type(value) in (int, float):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float64
            return math.inf
    return math.nan


def encode(bed: str, samples, t=None, **extra) -> str:
    """One message line (gateways, tests, benchmarks): samples (T, channels), t (T,) seconds or None."""
    obj = {"bed": bed, **({"t": [round(float(v), 6) for v in t]} if t is not None else {}),
           "x": np.asarray(samples, np.float64).tolist(), **extra}
    return json.dumps(obj, allow_nan=False)


def encode_block(beds: list[str], samples, t0=None, dt: float | None = None, **extra) -> str:
    """One block line (a ward's gateway): samples (beds, T, channels), t0 (beds,) seconds and dt, or untimed."""
    x = np.ascontiguousarray(samples, "<f4")
    obj = {"beds": list(beds), **({"t0": [float(v) for v in t0], "dt": float(dt)} if t0 is not None else {}),
           "n": int(x.shape[1]), "x": base64.b64encode(x.tobytes()).decode("ascii"), **extra}
    return json.dumps(obj, allow_nan=False)
