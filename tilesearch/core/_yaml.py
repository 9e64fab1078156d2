"""Reading the YAML files users and runs write (tile configs, spaces, profiles, run.yaml), with one-line errors."""

from __future__ import annotations

from pathlib import Path

import yaml

from tilesearch.core._errors import DataError


def parse_yaml(text: str, where: str):
    """The document in ``text``; invalid YAML is a :class:`DataError` naming ``where`` and the line."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise DataError(f"{where} is not valid YAML{line}: {problem}") from error


def read_yaml(path: str | Path, what: str):
    """The document in the file ``path`` (a ``what``: config file, run file...), or a one-line error."""
    where = f"{what} {str(path)!r}"
    try:
        text = Path(path).read_text()
    except FileNotFoundError as error:
        raise DataError(f"{where} does not exist") from error
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{where} cannot be read: {getattr(error, 'strerror', None) or error}") from error
    return parse_yaml(text, where)
