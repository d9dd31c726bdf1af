"""SDK worker entry point for local ``multi_processing`` runs: Beam's own harness with bounded data queues and
2 MB data messages, tidied after each bundle.

Why: a Beam SDK worker lets each of its data-plane queues (two send queues, one receive queue per bundle)
hold up to 100 MB. When the runner reads a stage's output more slowly than the worker writes it (the
spilling grouping buffer decodes every element to find its key), the send queues can fill that far.
``lazaret.spill.install`` starts local workers through this module, which caps those queues at the runner's
own ``SEND_QUEUE_BYTES`` and then runs ``apache_beam.runners.worker.sdk_worker_main`` unchanged. It is a
bound, not a measured fix: on 80,000 T0 records the cap alone left the largest worker at 470 MB (473 MB
without it); what brought worker memory down were the bundle rounds in ``lazaret.spill``, the
after-bundle tidy (``tidy_after_bundles``) and the 2 MB data messages (``lazaret.spill.DATA_FLUSH_BYTES``,
set here for the worker's side: 4x T0 dedup, largest worker 502 -> 392 MB together with 4 MB bundles).
"""

from __future__ import annotations

import sys

from lazaret.spill import DATA_FLUSH_BYTES, SEND_QUEUE_BYTES, set_data_flush


def bound_queues() -> None:
    """Cap the data plane's queues before the harness opens its channels (they read the module global then),
    and flush its messages at the runner's ``DATA_FLUSH_BYTES`` (see ``lazaret.spill``)."""
    from apache_beam.runners.worker import data_plane

    data_plane._DEFAULT_SEND_QUEUE_MAX_BYTES = SEND_QUEUE_BYTES
    try:
        set_data_flush(DATA_FLUSH_BYTES)
    except (ValueError, AttributeError):  # another Beam's data plane: keep its own threshold
        pass


def tidy_after_bundles() -> None:
    """Run ``lazaret.memory.Tidy`` (rate-limited full collection, then ``malloc_trim``) after every bundle."""
    from apache_beam.runners.worker import bundle_processor

    from lazaret.memory import Tidy, tidy_enabled

    if not tidy_enabled():
        return
    tidy = Tidy()
    process_bundle = bundle_processor.BundleProcessor.process_bundle

    def process_bundle_then_tidy(self, *args, **kwargs):
        try:
            return process_bundle(self, *args, **kwargs)
        finally:
            tidy()

    bundle_processor.BundleProcessor.process_bundle = process_bundle_then_tidy


IDLE_STAGE_S = 5.0


def release_idle_stages() -> None:
    """Shut a stage's cached bundle processors down after ``IDLE_STAGE_S`` idle seconds, not Beam's 60.

    Why: the worker keeps one ``BundleProcessor`` (operations, DoFns, their buffers) per stage it has run,
    until the stage has been idle for a minute. The local runner runs each stage once, in one burst, so a
    stage idle for a few seconds is finished; the connected-components rounds alone are a dozen short stages,
    and their processors raised the worker's baseline while they were kept (4x T0 dedup, 2 workers: largest
    worker 664 -> 619 MB, no CPU cost measured). A stage that is needed again after all is set up again.
    """
    from apache_beam.runners.worker import sdk_worker

    sdk_worker.DEFAULT_BUNDLE_PROCESSOR_CACHE_SHUTDOWN_THRESHOLD_S = IDLE_STAGE_S


def main(argv: list) -> None:
    bound_queues()
    release_idle_stages()
    tidy_after_bundles()
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(argv)


if __name__ == "__main__":
    main(sys.argv)
