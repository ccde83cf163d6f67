"""The fleet's user error: the CLI prints it on one line and exits 2 (like every RnnedgeError)."""

from rnnedge.errors import RnnedgeError


class FleetError(RnnedgeError):
    """A bad fleet input, output, checkpoint or savepoint (e.g. one made with another model)."""
