"""The monitor's user error: the CLI prints it on one line and exits 2 (like every RnnedgeError)."""

from rnnedge.errors import RnnedgeError


class MonitorError(RnnedgeError):
    """A bad monitor input source, operating point or model for the bed-exit monitor."""
