"""The one exception type for user mistakes.

Raised with a single-line message that names the bad value and what would be
accepted; the CLI prints it as ``error: ...`` and exits non-zero, never with a
traceback.
"""


class TilesearchError(Exception):
    """A user-facing error: bad input, unknown name, missing file."""
