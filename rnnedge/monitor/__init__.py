"""The bed-exit monitor: get-up alarms from a streaming activity tagger, on the torch-free runtime.

    import rnnedge.runtime as rt
    from rnnedge.monitor import Monitor
    monitor = Monitor(rt.load("bundle/", precision="int8"))
    records = monitor.push(sample)          # -> [{"event": "alarm_start", "t": ..., "p": ...}, ...]

Many beds at once: `Ward` (ward.py), the engine every monitor runs on (a Monitor is a ward of one bed).
"""

from rnnedge.monitor.alarm import Alarm, AlarmConfig
from rnnedge.monitor.errors import MonitorError
from rnnedge.monitor.monitor import Monitor
from rnnedge.monitor.operating_point import DEFAULT, OperatingPoint
from rnnedge.monitor.score import GetUpScore, ScoreConfig
from rnnedge.monitor.ward import Ward

__all__ = ["DEFAULT", "Alarm", "AlarmConfig", "GetUpScore", "Monitor", "MonitorError", "OperatingPoint",
           "ScoreConfig", "Ward"]
