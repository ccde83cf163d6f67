"""The monitor's user error: the CLI prints it on one line and exits 2 (like every RnnedgeError)."""

from rnnedge.errors import RnnedgeError


class MonitorError(RnnedgeError):
    """A bad monitor input source, operating point or model for the bed-exit monitor."""


def bounded(name: str, value: object, low: float, high: float, *, above: bool = False) -> float:
    """`value` as a float in [low, high] ((low, high] with `above`), else a MonitorError naming the setting: a NaN,
    an infinity, a string or a number out of range never reaches the alarm (where it would switch it off)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MonitorError(f"{name} must be a number, got {value!r:.40}")
    number = float(value)
    if not (low < number <= high if above else low <= number <= high):  # NaN fails both
        raise MonitorError(f"{name} must be in {'(' if above else '['}{low:g}, {high:g}], got {number:g}")
    return number
