"""SDK worker entry point for local ``multi_processing`` runs: Beam's own harness with bounded data queues.

Why: a Beam SDK worker lets each of its data-plane queues (two send queues, one receive queue per bundle)
hold up to 100 MB. When the runner reads a stage's output more slowly than the worker writes it (the
spilling grouping buffer decodes every element to find its key), the send queues can fill that far.
``lazaret.spill.install`` starts local workers through this module, which caps those queues at the runner's
own ``SEND_QUEUE_BYTES`` and then runs ``apache_beam.runners.worker.sdk_worker_main`` unchanged. It is a
bound, not a measured fix: on 80,000 T0 records the cap alone left the largest worker at 470 MB (473 MB
without it); what brought worker memory down were the bundle rounds in ``lazaret.spill``.
"""

from __future__ import annotations

import sys

from lazaret.spill import SEND_QUEUE_BYTES


def bound_queues() -> None:
    """Cap the data plane's queues before the harness opens its channels (they read the module global then)."""
    from apache_beam.runners.worker import data_plane

    data_plane._DEFAULT_SEND_QUEUE_MAX_BYTES = SEND_QUEUE_BYTES


def main(argv: list) -> None:
    bound_queues()
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(argv)


if __name__ == "__main__":
    main(sys.argv)
