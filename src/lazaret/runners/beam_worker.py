"""SDK worker entry point for local ``multi_processing`` runs: Beam's own harness with bounded data queues and
2 MB data messages, tidied after each bundle.

Why: a Beam SDK worker lets each of its data-plane queues (two send queues, one receive queue per bundle)
hold up to 100 MB. When the runner reads a stage's output more slowly than the worker writes it (the
spilling grouping buffer decodes every element to find its key), the send queues can fill that far.
``lazaret.runners.spill.install`` starts local workers through this module (and only then: it is the in-process
runner's worker command, never a Flink, Spark or portable worker's), which applies the "worker" and "both"
rows of ``lazaret.runners.spill.REPLACED`` and then runs ``apache_beam.runners.worker.sdk_worker_main`` unchanged.
The queue cap is a bound, not a measured fix: on 80,000 T0 records it alone left the largest worker at
470 MB (473 MB without it); what brought worker memory down were the bundle rounds in ``lazaret.runners.spill``, the
after-bundle tidy (``with_tidy``) and the 2 MB data messages (``lazaret.runners.spill.DATA_FLUSH_BYTES``, set here for
the worker's own output streams: 4x T0 dedup, largest worker 502 -> 392 MB together with 4 MB bundles).
"""

from __future__ import annotations

import sys

from lazaret.runners import spill


def bound_queues() -> list:
    """Cap the data plane's queues before the harness opens its channels (they read the module global then),
    and flush its messages at ``DATA_FLUSH_BYTES`` (rows ``send_queue`` and ``flush_*`` of the table)."""
    return spill.apply(("both",), ("send_queue",) + spill.FLUSH_ROWS)


def with_tidy(process_bundle):
    """``BundleProcessor.process_bundle`` followed by ``lazaret.runners.memory.Tidy`` (rate-limited full collection,
    then ``malloc_trim``); ``process_bundle`` itself when ``LAZARET_NO_TIDY`` is set."""
    from lazaret.runners.memory import Tidy, tidy_enabled

    if not tidy_enabled():
        return process_bundle
    tidy = Tidy()

    def process_bundle_then_tidy(self, *args, **kwargs):
        try:
            return process_bundle(self, *args, **kwargs)
        finally:
            tidy()

    return process_bundle_then_tidy


def tidy_after_bundles() -> list:
    """Row ``tidy_bundles``: every bundle is followed by a tidy (see :func:`with_tidy`)."""
    return spill.apply(("worker",), ("tidy_bundles",))


IDLE_STAGE_S = 5.0


def release_idle_stages() -> list:
    """Row ``idle_stages``: shut a stage's cached bundle processors down after ``IDLE_STAGE_S`` idle seconds,
    not Beam's 60.

    Why: the worker keeps one ``BundleProcessor`` (operations, DoFns, their buffers) per stage it has run,
    until the stage has been idle for a minute. The local runner runs each stage once, in one burst, so a
    stage idle for a few seconds is finished; the connected-components rounds alone are a dozen short stages,
    and their processors raised the worker's baseline while they were kept (4x T0 dedup, 2 workers: largest
    worker 664 -> 619 MB, no CPU cost measured). A stage that is needed again after all is set up again.
    """
    return spill.apply(("worker",), ("idle_stages",))


def main(argv: list) -> None:
    spill.apply(("worker", "both"))  # every row for this process: bound_queues, release_idle_stages, tidy
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(argv)


if __name__ == "__main__":
    main(sys.argv)
