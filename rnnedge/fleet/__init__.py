"""The bed-exit monitor for a fleet of beds on Apache Flink (PyFlink): `rnnedge fleet`, docs/fleet.md.

    messages.py  the message format (a bed id, timestamps, a chunk of samples) -> monitor Rows
    beds.py      a live Monitor per bed in front of its Flink keyed state (model sha256 checked on restore)
    job.py       the Flink job (imports pyflink): sources, the keyed operator, the exactly-once file sink
    cli.py       the command; bench.py the throughput/latency benchmark

Only job.py (and what imports it) needs apache-flink, which pins numpy and pandas below the main environment's
versions: it lives in its own virtualenv (`make fleet-env`).
"""
