"""Readers (files to records, with positions) and writers (deterministic sharded outputs)."""
