"""The exception types of user mistakes.

Raised with a single-line message that names the bad value and what would be
accepted; the CLI prints it as ``error: ...`` and exits non-zero, never with a
traceback. :class:`TilesearchError` is a :class:`ValueError`, so library
callers can catch it as one; the subclasses tell apart the mistakes a caller
may want to handle differently.
"""


class TilesearchError(ValueError):
    """A user-facing error: bad input, unknown name, missing file."""


class UnknownNameError(TilesearchError):
    """A model, search space, profile, metric or other name that tilesearch does not know."""


class DataError(TilesearchError):
    """Images, annotations or a checkpoint that are missing, unreadable or do not fit the model."""


class StudyError(TilesearchError):
    """A run folder or Optuna study that cannot be opened, or was made with other settings."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type when it has none), for one-line reports."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


class TilesearchWarning(UserWarning):
    """Something tilesearch worked around (an unreadable cache, a skipped image) that a user should know of."""
