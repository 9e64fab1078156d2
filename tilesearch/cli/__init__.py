"""The ``tilesearch`` command line: shared option declarations, commands and terminal rendering."""

from tilesearch.cli._app import app, main

__all__ = ["app", "main"]
