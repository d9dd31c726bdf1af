"""Checks: each a Beam PTransform from records to findings."""
