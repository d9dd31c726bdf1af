"""Entry point for ``lazaret report DIR`` (the lead's CLI imports ``lazaret.report.cli:main``)."""

from lazaret.report import main

__all__ = ["main"]
