"""Lazaret: a quarantine station for fine-tuning corpora."""

__version__ = "0.1.0"
