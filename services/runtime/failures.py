"""What stops a service at start for a reason an operator can act on: `relais` says it in one
line and exits 1, without a traceback."""


class CannotStart(Exception):
    """The message says why, and what to do, in one line."""
