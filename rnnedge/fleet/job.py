"""The Flink job: bed-exit monitors keyed by shard of bed, with per-bed state in Flink keyed state (PyFlink).

    source (files: a directory monitored continuously, or plain files; or an in-memory collection; one reader)
      -> ParseMessages (an element holds one message line, or several separated by newlines: a gateway's batch;
         each line -> Message, bad ones to a side output, counted in the metric bad_messages; the element's good
         messages grouped by shard (crc32(bed) % SHARDS, keyed so that shards spread evenly over subtasks): one
         element per shard; parallelism 1, forward from the
         source: each bed's messages reach its monitor in the source's order)
      -> key_by(shard) -> ShardMonitorFunction (one ward per task slot: rnnedge.fleet.beds; an element's beds are
         stepped together, one ward call per round of their messages; per-bed state in MapState[bed -> state]; the
         torch-free runtime loaded once per task slot in open())
      -> union(bad messages) -> sink (files, exactly-once: part files committed on each checkpoint)

Why shards: every element that crosses between the JVM and a Python worker, and every keyed-state access per
element, costs far more than the monitor's work on a small message; a shard element carries all of an input
element's messages for that shard in one crossing, and the ward steps them in one batched call per sample. Fewer
shards make larger batches; SHARDS bounds the useful parallelism. Rescaling still moves state by key group (a
shard is a key; at most SHARDS subtasks get beds), TTL is per bed (per map entry), and every bed's state carries the
model's sha256.
Checkpoints go to a filesystem path (retained after a cancel or a kill, so `restore="latest"` finds them);
restarts are bounded (fixed delay). A bed silent for longer than `state_ttl_s` loses its state (it starts again
with a warm-up). At the end of a bounded input (plain files, a collection) every bed's monitor is flushed and
writes its summary, as `rnnedge monitor` does at the end of a file: an event-time timer at the end of time.

Only this module imports pyflink (the `fleet` environment: see docs/fleet.md).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pyflink.common import Configuration, Duration, Encoder, Time, Types, WatermarkStrategy
from pyflink.datastream import (
    CheckpointingMode,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    RuntimeContext,
    StreamExecutionEnvironment,
)
from pyflink.datastream.connectors.file_system import (
    BucketAssigner,
    FileSink,
    FileSource,
    OutputFileConfig,
    RollingPolicy,
    StreamFormat,
)
from pyflink.datastream.state import MapStateDescriptor, StateTtlConfig

from rnnedge.fleet import messages
from rnnedge.fleet.beds import BedWard, MonitorSettings
from rnnedge.fleet.errors import FleetError

END_OF_INPUT = (1 << 63) - 1  # Flink's last watermark: a bounded source emits it when it is done
MAX_PARALLELISM = 128  # fixed: key groups must stay the same for a savepoint to restore at another parallelism
PARSE_SLOTS = "fleet-parse"  # the parser's slot sharing group (a Python operator before it belongs there too)
SHARDS = 16  # keys of the monitor operator: beds per ward call vs the most subtasks that get work (measured)
SHARD_KEYS = messages.spread_keys(SHARDS, MAX_PARALLELISM)  # shard i's key: key groups spread evenly
# "fleet-monitor-ward16": state layout 3, 16 shards (a savepoint of an earlier layout is refused, not misread)
UID = {"source": "fleet-source", "parse": "fleet-parse", "monitor": "fleet-monitor-ward16", "sink": "fleet-sink"}


@dataclass(frozen=True)
class FleetConfig:
    bundle: str
    output: str
    backend: str = "onnxruntime"  # pinned: the monitor's chunks are bit-equal to steps there (tested)
    precision: str = "int8"
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    parallelism: int = 2
    checkpoint_dir: str | None = None  # default: OUTPUT.checkpoints
    checkpoint_interval_s: float = 10.0
    restore: str | None = None  # a checkpoint/savepoint path, or "latest" (newest checkpoint in checkpoint_dir)
    state_ttl_s: float = 3600.0  # 0: never expire
    beds: frozenset[str] | None = None  # the allowed beds (None: any)
    cache_size: int = 8192  # live monitors per task slot
    bundle_ms: int = 100  # PyFlink bundle time: bounds the latency added between Python and the JVM
    bundle_size: int | None = None  # PyFlink bundle size (elements); None: Flink's default
    latency: int = 0  # benchmark: a "latency" record every this many messages (per task slot; 0: none)
    embedded: bool = True  # local mini-cluster; False under `flink run` (the cluster decides)

    @property
    def checkpoints(self) -> Path:
        return Path(self.checkpoint_dir) if self.checkpoint_dir else Path(f"{self.output}.checkpoints")


class ParseMessages(ProcessFunction):
    def __init__(self, beds: frozenset[str] | None, bad: OutputTag) -> None:
        self.beds, self.bad_tag = beds, bad

    def open(self, runtime_context: RuntimeContext) -> None:
        self.bad = runtime_context.get_metrics_group().counter("bad_messages")

    def process_element(self, value: str, ctx: ProcessFunction.Context):
        received, shards = time.time(), {}
        # a batch's blank lines are separators; a lone blank line is a bad message, as any other non-message
        batched = "\n" in value
        for line in value.split("\n"):
            if batched and not line.strip():
                continue
            good, bad = messages.parse_line(line, received, self.beds)
            for bed, why in bad:
                self.bad.inc()
                yield self.bad_tag, json.dumps({"event": "bad_message", "bed": bed, "detail": why,
                                                "message": line[:200]})
            for message in good:
                shards.setdefault(SHARD_KEYS[messages.shard(message.bed, SHARDS)], []).append(message)
        yield from shards.items()


class ShardMonitorFunction(KeyedProcessFunction):
    """The beds of one shard: an element is (shard, [Message, ...]) in the source's order."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config

    def open(self, runtime_context: RuntimeContext) -> None:
        import rnnedge.runtime as rt

        config = self.config
        self.model = rt.load(config.bundle, backend=config.backend, precision=config.precision)  # once per slot
        self.channels = list(self.model.manifest.input.channels)
        self.beds = BedWard(self.model, config.monitor, config.cache_size, config.state_ttl_s)
        descriptor = MapStateDescriptor("beds", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        if config.state_ttl_s > 0:  # per bed: a map entry expires on its own
            ttl = (StateTtlConfig.new_builder(Time.milliseconds(round(config.state_ttl_s * 1000)))
                   .update_ttl_on_create_and_write().never_return_expired().cleanup_full_snapshot().build())
            descriptor.enable_time_to_live(ttl)
        self.state = runtime_context.get_map_state(descriptor)
        metrics = runtime_context.get_metrics_group()
        self.samples, self.alarms = metrics.counter("samples"), metrics.counter("alarms")
        self.messages, self.timed = 0, set()
        logging.getLogger("rnnedge.monitor").setLevel(logging.ERROR)  # its warnings are events here already

    def process_element(self, value: tuple[int, list[messages.Message]], ctx: KeyedProcessFunction.Context):
        shard, batch = value
        if shard not in self.timed:
            # its beds' summaries at the end of a bounded input: registered again by a restored worker (a savepoint
            # restored at another parallelism was seen to lose it); Flink keeps one timer per shard and time
            ctx.timer_service().register_event_time_timer(END_OF_INPUT)
            self.timed.add(shard)
        by_bed: dict[str, list[messages.Message]] = {}
        for message in batch:
            by_bed.setdefault(message.bed, []).append(message)
        beds = list(by_bed)
        for a in range(0, len(beds), self.beds.cache_size):  # never more beds at once than the ward holds
            yield from self._beds({bed: by_bed[bed] for bed in beds[a:a + self.beds.cache_size]})

    def _beds(self, by_bed: dict[str, list[messages.Message]]) -> Iterable[str]:
        """Each bed's messages in order: a ward call per round (every bed's first message, then the second...)."""
        states = {bed: self.state.get(bed) for bed in by_bed}
        for bed, state in states.items():
            self.beds.ready(bed, state)
        latency = self.config.latency
        for i in range(max(len(m) for m in by_bed.values())):
            now = {bed: m[i] for bed, m in by_bed.items() if i < len(m)}
            out = self.beds.feed({bed: messages.samples(message, self.channels) for bed, message in now.items()})
            for bed, message in now.items():
                self.samples.inc(len(message.x))
                yield from self._lines(bed, out[bed])
                self.messages += 1
                if latency and self.messages % latency == 0:
                    t, sent = time.time(), message.sent
                    yield json.dumps({"event": "latency", "bed": bed, "in_s": round(t - message.received, 6),
                                      **({"e2e_s": round(t - sent, 6), "sent": sent} if sent is not None else {})})
        for bed, state in states.items():
            self.state.put(bed, self.beds.capture(bed, state))

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        for bed, state in list(self.state.items()):
            self.beds.ready(bed, state)
            records = self.beds.finish(bed)  # as at a file's end
            self.state.put(bed, self.beds.capture(bed, state))
            yield from self._lines(bed, records)

    def _lines(self, bed: str, records: list[dict]) -> Iterable[str]:
        from rnnedge.monitor.monitor import json_line

        for record in records:
            if record["event"] == "alarm_start":
                self.alarms.inc()
            yield json_line({**record, "bed": bed})


def environment(config: FleetConfig) -> StreamExecutionEnvironment:
    conf = Configuration()
    settings = {
        "execution.checkpointing.dir": config.checkpoints.resolve().as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": "3",
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": "3",
        "restart-strategy.fixed-delay.delay": "1 s",
        "pipeline.max-parallelism": str(MAX_PARALLELISM),
        "python.fn-execution.bundle.time": str(config.bundle_ms),
        **({"python.fn-execution.bundle.size": str(config.bundle_size)} if config.bundle_size else {}),
        "python.state.cache-size": str(config.cache_size),
    }
    if config.embedded:  # the workers run this interpreter (its environment has rnnedge and the runtime)
        settings |= {"python.executable": sys.executable, "python.client.executable": sys.executable,
                     "taskmanager.numberOfTaskSlots": str(config.parallelism + 1)}  # + the parser's (build())
        # PyFlink's default in a local mini-cluster ("loopback") runs every Python operator inside this client
        # process: one interpreter, one core for the whole job (measured: ~5,000 samples/s at any parallelism).
        # Its own worker processes instead: each task slot's Python work on its own core.
        os.environ["_python_worker_execution_mode"] = "process"  # noqa: SIM112 (PyFlink reads this name)
    if config.restore:
        settings["execution.state-recovery.path"] = restore_path(config)
    for key, value in settings.items():
        conf.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(config.parallelism)
    env.enable_checkpointing(round(config.checkpoint_interval_s * 1000), CheckpointingMode.EXACTLY_ONCE)
    return env


def restore_path(config: FleetConfig) -> str:
    """The checkpoint/savepoint to restore: a path, or "latest" (the newest complete checkpoint)."""
    if config.restore != "latest":
        path = Path(config.restore)
        if not (path / "_metadata").is_file() and not path.is_file():
            raise FleetError(f"{path}: not a Flink checkpoint or savepoint (no _metadata)")
        return path.resolve().as_uri()
    found = latest_checkpoint(config.checkpoints)
    if found is None:
        raise FleetError(f"{config.checkpoints}: no complete checkpoint to restore")
    return found.as_uri()


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint (chk-N with its _metadata) of any job under folder."""
    done = [m.parent for m in folder.glob("*/chk-*/_metadata")]
    return max(done, key=lambda p: (p.stat().st_mtime, int(p.name[4:]))) if done else None


def build(env: StreamExecutionEnvironment, lines, config: FleetConfig) -> None:
    """Add the job to env: lines (a DataStream of message lines) -> monitors -> the file sink."""
    bad = OutputTag("bad-messages", Types.STRING())
    # one parser: two would pass a bed's consecutive messages to its monitor on two channels, in any order
    # in a slot of its own: PyFlink runs the Python operators of one slot in one worker process, and the parser
    # sharing the first monitors' worker (one interpreter, one GIL) was measured to starve them
    parsed = lines.process(ParseMessages(config.beds, bad), Types.PICKLED_BYTE_ARRAY()).uid(UID["parse"]) \
        .name("parse messages").set_parallelism(1).slot_sharing_group(PARSE_SLOTS)
    events = parsed.key_by(lambda batch: batch[0], key_type=Types.INT()) \
        .process(ShardMonitorFunction(config), Types.STRING()).uid(UID["monitor"]).name("bed monitors")
    sink = FileSink.for_row_format(Path(config.output).resolve().as_uri(), Encoder.simple_string_encoder()) \
        .with_bucket_assigner(BucketAssigner.base_path_bucket_assigner()) \
        .with_output_file_config(OutputFileConfig.builder().with_part_prefix("events").with_part_suffix(".jsonl")
                                 .build()) \
        .with_rolling_policy(RollingPolicy.on_checkpoint_rolling_policy()).build()
    events.union(parsed.get_side_output(bad)).sink_to(sink).uid(UID["sink"]).name("events")


def file_lines(env: StreamExecutionEnvironment, inputs: list[str], monitor_s: float | None):
    """Message lines from files; a folder is watched for new files every monitor_s seconds (None: read once)."""
    builder = FileSource.for_record_stream_format(StreamFormat.text_line_format(),
                                                  *[Path(p).resolve().as_uri() for p in inputs])
    if monitor_s:
        builder = builder.monitor_continuously(Duration.of_millis(round(monitor_s * 1000)))
    return env.from_source(builder.build(), WatermarkStrategy.no_watermarks(), "message files").uid(UID["source"]) \
        .set_parallelism(1)  # one reader: files one after the other (their order: the enumerator's, docs/fleet.md)


def stop_with_savepoint(client, folder: Path, drain: bool = False) -> str:
    """Stop the job with a canonical savepoint in folder (restorable at another parallelism); its path. With
    `drain`, the end of event time first: every bed writes its summary (a benchmark's end; not restorable as a
    continuation).
    pyflink 2.3's JobClient.stop_with_savepoint calls the Java method without its format argument, which Flink 2
    requires: call it here."""
    from pyflink.common.completable_future import CompletableFuture
    from pyflink.java_gateway import get_gateway

    canonical = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
    future = client._j_job_client.stopWithSavepoint(drain, folder.resolve().as_uri(), canonical)
    return CompletableFuture(future, str).result()


def run(config: FleetConfig, inputs: list[str] | None = None, collection: list[str] | None = None,
        monitor_s: float | None = None, job_name: str = "rnnedge fleet"):
    """Build the job on files (or an in-memory collection of lines) and start it; returns the JobClient."""
    os.makedirs(config.checkpoints, exist_ok=True)
    env = environment(config)
    if collection is not None:
        lines = env.from_collection(collection, Types.STRING())
    else:
        lines = file_lines(env, inputs or [], monitor_s)
    build(env, lines, config)
    return env.execute_async(job_name)
