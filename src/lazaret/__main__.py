"""``python -m lazaret`` is the same CLI."""

from lazaret.cli import entry

entry()
