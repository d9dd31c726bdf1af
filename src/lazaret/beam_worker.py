"""SDK worker entry point for local ``multi_processing`` runs: Beam's own harness with bounded data queues.

Why: a Beam SDK worker buffers up to 100 MB in each of its data-plane queues (two send queues and one
receive queue per bundle). When the runner reads a stage's output more slowly than the worker writes it (the
spilling grouping buffer decodes every element to find its key), the worker's send queues fill, and how far
they fill depends on how much output the stage has: on 80,000 T0 records this was the worker memory that grew
with the corpus. ``lazaret.spill.install`` starts local workers through this module, which caps those queues
at ``WORKER_QUEUE_BYTES`` and then runs ``apache_beam.runners.worker.sdk_worker_main`` unchanged.
"""

from __future__ import annotations

import sys

WORKER_QUEUE_BYTES = 16 << 20


def bound_queues() -> None:
    """Cap the data plane's queues before the harness opens its channels (they read the module global then)."""
    from apache_beam.runners.worker import data_plane

    data_plane._DEFAULT_SEND_QUEUE_MAX_BYTES = WORKER_QUEUE_BYTES


def main(argv: list) -> None:
    bound_queues()
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(argv)


if __name__ == "__main__":
    main(sys.argv)
