"""Entry point for ``lazaret report DIR`` (the lead's CLI imports ``lazaret.workflow.report.cli:main``)."""

from lazaret.workflow.report import main

__all__ = ["main"]
