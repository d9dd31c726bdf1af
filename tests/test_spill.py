"""The local runner's disk-backed shuffle buffers (lazaret.spill) give the same results as Beam's own."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import execution

from lazaret import spill


def _run(tmp_path, n_workers: int, spilling: bool, threshold: int = 0, bundle_bytes=None):
    """A shuffle-heavy pipeline: GroupByKey, CoGroupByKey, a side input and a PCollection read twice."""
    out_dir = tmp_path / f"w{n_workers}-{'spill' if spilling else 'mem'}-{bundle_bytes}"
    out_dir.mkdir(parents=True)
    opts = PipelineOptions(["--direct_num_workers", str(n_workers), "--direct_running_mode", "multi_threading"])

    def collect(name):
        def keep(values):
            (out_dir / f"{name}.json").write_text(json.dumps(sorted(values)))
        return keep

    with (spill.install(threshold=threshold, bundle_bytes=bundle_bytes) if spilling else _Null()) as active:
        with beam.Pipeline(runner="FnApiRunner", options=opts) as p:
            nums = p | beam.Create(list(range(20000)), reshuffle=False)
            keyed = nums | "Key" >> beam.Map(lambda i: (i % 997, "x" * (i % 600) + str(i)))  # ~6 MB grouped
            grouped = (keyed | beam.GroupByKey()
                       | "Sorted" >> beam.MapTuple(lambda k, vs: (k, sorted(vs))))
            other = nums | "Other" >> beam.Map(lambda i: (i % 997, i * i))
            joined = ({"a": keyed, "b": other} | beam.CoGroupByKey()
                      | "Sizes" >> beam.MapTuple(lambda k, g: (k, len(list(g["a"])), sum(g["b"]))))
            total = nums | beam.combiners.Count.Globally()
            scaled = nums | "Scale" >> beam.Map(lambda i, t: i * 1.0 / t, beam.pvalue.AsSingleton(total))
            for name, pc in {"grouped": grouped, "joined": joined, "scaled": scaled}.items():
                _ = pc | f"Gather_{name}" >> beam.combiners.ToList() | f"Keep_{name}" >> beam.Map(collect(name))
    return {f.stem: json.loads(f.read_text()) for f in sorted(out_dir.iterdir())}, active


class _Null:
    def __enter__(self):
        return False

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("workers", [1, 2])
def test_every_buffer_spilled_gives_the_same_results(workers, tmp_path):
    reference, _ = _run(tmp_path, workers, spilling=False)
    spilled, active = _run(tmp_path, workers, spilling=True, threshold=0)
    assert active
    assert spill.stats["files"] > 0 and spill.stats["bytes"] > 0  # the spill path really ran
    assert spilled == reference
    assert len(reference["grouped"]) == 997 and len(reference["scaled"]) == 20000


@pytest.mark.parametrize("workers", [1, 2])
def test_large_stages_run_in_bounded_bundle_rounds(workers, tmp_path):
    """Stages whose input exceeds workers x bundle_bytes run as rounds of smaller bundles, same results."""
    reference, _ = _run(tmp_path, workers, spilling=False)
    rounds, active = _run(tmp_path, workers, spilling=True, threshold=0, bundle_bytes=64 << 10)
    assert active
    assert spill.stats["rounds"] > 0  # some stage really was cut into rounds
    assert rounds == reference
    _, _ = _run(tmp_path, workers, spilling=True, threshold=0, bundle_bytes=64 << 20)
    assert spill.stats["rounds"] == 0  # with bundles larger than any stage's input, it runs as Beam runs it


def test_grouped_chunks_are_spread_over_workers():
    """A spilled grouping with few keys (a writer's shards) must not hand every group to worker 0."""
    from apache_beam.coders import coders
    from apache_beam.coders.coder_impl import create_OutputStream
    from apache_beam.transforms.core import Windowing
    from apache_beam.transforms.window import GlobalWindows

    kv = coders.TupleCoder([coders.VarIntCoder(), coders.BytesCoder()])
    pre = coders.WindowedValueCoder(kv, coders.GlobalWindowCoder())
    post = coders.WindowedValueCoder(coders.TupleCoder([coders.VarIntCoder(), coders.IterableCoder(
        coders.BytesCoder())]), coders.GlobalWindowCoder())
    with spill.install(threshold=0):
        buf = execution.GroupingBuffer(pre, post, Windowing(GlobalWindows()))
        for key in range(8):
            out = create_OutputStream()
            for _ in range(10):
                pre.get_impl().encode_to_stream(GlobalWindows.windowed_value((key, b"v" * 1000)), out, True)
            buf.append(out.get())
        parts = buf.partition(2)
        sizes = [sum(len(c) for c in part) for part in parts]
    assert min(sizes) > 0.3 * sum(sizes)


def test_local_workers_start_through_the_bounded_entry_point():
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    seen = []
    original = worker_handlers.SubprocessSdkWorkerHandler.__init__
    try:
        worker_handlers.SubprocessSdkWorkerHandler.__init__ = lambda self, cmd, *a: seen.append(cmd)
        with spill.install():
            h = worker_handlers.SubprocessSdkWorkerHandler.__new__(worker_handlers.SubprocessSdkWorkerHandler)
            h.__init__(b"/usr/bin/python3 -m apache_beam.runners.worker.sdk_worker_main", None, None, None)
            h.__init__(b"my-own-worker --flag", None, None, None)
    finally:
        worker_handlers.SubprocessSdkWorkerHandler.__init__ = original
    assert seen == [b"/usr/bin/python3 -m lazaret.beam_worker", b"my-own-worker --flag"]


def test_install_restores_beams_buffers():
    from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers
    from apache_beam.runners.worker import data_plane

    def state():
        return (execution.ListBuffer, execution.GroupingBuffer, fn_runner.ListBuffer,
                fn_runner.BundleManager._send_input_to_worker, data_plane._DEFAULT_SEND_QUEUE_MAX_BYTES,
                fn_runner.ParallelBundleManager.process_bundle,
                worker_handlers.SubprocessSdkWorkerHandler.__init__, fn_runner.FnApiRunner._get_bundle_manager)

    before = state()
    with spill.install(threshold=0) as active:
        assert active
        assert execution.ListBuffer is not before[0] and issubclass(execution.ListBuffer, before[0])
        assert issubclass(execution.GroupingBuffer, before[1])
        assert fn_runner.BundleManager._send_input_to_worker is spill._send_input_streaming
        assert data_plane._DEFAULT_SEND_QUEUE_MAX_BYTES == spill.SEND_QUEUE_BYTES
        assert fn_runner.ParallelBundleManager.process_bundle is spill._process_in_rounds
        assert worker_handlers.SubprocessSdkWorkerHandler.__init__ is not before[6]
    assert state() == before


def test_spill_files_leave_nothing_on_disk(tmp_path):
    with spill.install(spill_dir=str(tmp_path), threshold=0):
        buf = execution.ListBuffer(None)
        for i in range(5):
            buf.append(bytes([i]) * 1000)
        assert [len(c) for c in buf] == [1000] * 5
        assert [b"".join(part)[:1] for part in buf.partition(2)] == [b"\x00", b"\x01"]
        copy = buf.copy()
        assert list(copy) == list(buf)
    assert not list(tmp_path.iterdir())  # files are unlinked when made


def test_unknown_beam_version_leaves_beam_alone(monkeypatch):
    monkeypatch.setattr(spill, "_beam_version", lambda: (9, 0))
    before = execution.ListBuffer
    with spill.install(threshold=0) as active:
        assert not active
        assert execution.ListBuffer is before


def test_spilled_groups_reach_workers_in_whole_elements():
    """A worker decodes each data message on its own (and the runner's data channel flushes on a timer
    between writes), so every chunk a spilled grouping hands out must hold whole elements."""
    from apache_beam import coders
    from apache_beam.coders.coder_impl import create_InputStream, create_OutputStream
    from apache_beam.coders.coders import GlobalWindowCoder
    from apache_beam.transforms import core, window

    kv = coders.TupleCoder((coders.BytesCoder(), coders.BytesCoder()))
    pre = coders.WindowedValueCoder(kv, GlobalWindowCoder())
    post = coders.WindowedValueCoder(coders.TupleCoder((coders.BytesCoder(), coders.IterableCoder(coders.BytesCoder()))),
                                     GlobalWindowCoder())
    with spill.install(threshold=0):
        buf = execution.GroupingBuffer(pre, post, core.Windowing(window.GlobalWindows()))
        sent = {}
        for batch in range(20):
            out = create_OutputStream()
            for i in range(500):
                key, value = b"k%d" % (i % 131), b"v" * (i % 300) + b"%d" % (batch * 500 + i)
                sent.setdefault(key, []).append(value)
                pre.get_impl().encode_to_stream(window.GlobalWindows.windowed_value((key, value)), out, True)
            buf.append(out.get())
        got = {}
        for part in buf.partition(2):
            chunks = list(part)
            assert len(chunks) > 1
            for chunk in chunks:
                stream = create_InputStream(chunk)
                while stream.size() > 0:  # raises or mis-decodes on a cut element
                    key, values = post.get_impl().decode_from_stream(stream, True).value
                    got.setdefault(key, []).extend(values)
    assert got == sent


def test_streaming_send_loses_nothing_to_the_timer_flush():
    """The runner's gRPC data stream also flushes from a timer thread; a write that lands while that flush
    waits on a full send queue must not be cleared unsent."""
    import time
    import types

    from apache_beam.runners.worker import data_plane

    received = []

    def slow_flush(data: bytes) -> None:
        time.sleep(0.002)  # a full send queue
        received.append(data)

    stream = data_plane.TimeBasedBufferingClosableOutputStream(
        close_callback=received.append, flush_callback=slow_flush, time_flush_threshold_ms=1)
    manager = types.SimpleNamespace(_worker_handler=types.SimpleNamespace(
        data_conn=types.SimpleNamespace(output_stream=lambda *_: stream)))
    chunks = [bytes([i % 251]) * 997 for i in range(2000)]

    def read_slowly():  # chunks come back from a spill file; the timer fires between writes
        for i, chunk in enumerate(chunks):
            if i % 10 == 0:
                time.sleep(0.0005)
            yield chunk

    sender = spill._send_input_streaming(manager, "bundle", "transform", read_slowly())
    sender.join(timeout=60)  # over gRPC the input is written from its own thread
    # Beam's own send loop kept ~0.5% of these bytes in this setting (apache_beam 2.77)
    assert b"".join(received) == b"".join(chunks)


def test_workers_collect_and_trim_after_bundles(monkeypatch):
    """lazaret.beam_worker wraps every bundle: the bundle runs unchanged, then (rate-limited) a full
    collection and malloc_trim."""
    import gc

    from apache_beam.runners.worker import bundle_processor

    from lazaret import beam_worker, memory

    calls = []
    monkeypatch.setattr(bundle_processor.BundleProcessor, "process_bundle",
                        lambda self, instruction_id: calls.append(("bundle", instruction_id)) or "result")
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append(("gc",)) or 0)
    monkeypatch.setattr(memory, "_malloc_trim", lambda: (lambda pad: calls.append(("trim", pad)) or 1))
    monkeypatch.setattr(memory, "TIDY_EVERY_S", 0.0)
    monkeypatch.delenv("LAZARET_NO_TIDY", raising=False)
    beam_worker.tidy_after_bundles()
    assert bundle_processor.BundleProcessor.process_bundle(object(), "b1") == "result"
    assert calls == [("bundle", "b1"), ("gc",), ("trim", 0)]
    monkeypatch.setattr(memory, "TIDY_EVERY_S", 3600.0)
    calls.clear()
    bundle_processor.BundleProcessor.process_bundle(object(), "b2")
    assert calls == [("bundle", "b2")]  # no second tidy within TIDY_EVERY_S


def test_runner_tidies_after_stages(monkeypatch, tmp_path):
    """In-process, the runner (which also runs the worker's bundles) tidies after every stage or round."""
    from lazaret import memory

    trims = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda: (lambda pad: trims.append(pad) or 1))
    monkeypatch.setattr(memory, "TIDY_EVERY_S", 0.0)
    monkeypatch.delenv("LAZARET_NO_TIDY", raising=False)
    _run(tmp_path / "on", 1, spilling=True, threshold=0, bundle_bytes=64 << 10)
    assert len(trims) > 5 and set(trims) == {0}
    monkeypatch.setenv("LAZARET_NO_TIDY", "1")
    trims.clear()
    _run(tmp_path / "off", 1, spilling=True, threshold=0, bundle_bytes=64 << 10)
    assert trims == []


def test_workers_release_idle_stages_early(monkeypatch):
    from apache_beam.runners.worker import sdk_worker

    from lazaret import beam_worker

    monkeypatch.setattr(sdk_worker, "DEFAULT_BUNDLE_PROCESSOR_CACHE_SHUTDOWN_THRESHOLD_S", 60)
    beam_worker.release_idle_stages()
    assert sdk_worker.DEFAULT_BUNDLE_PROCESSOR_CACHE_SHUTDOWN_THRESHOLD_S == beam_worker.IDLE_STAGE_S < 60


def test_data_messages_flush_at_the_bound_while_installed(monkeypatch):
    """Runner and local workers flush data-plane messages at DATA_FLUSH_BYTES; Beam's own value comes back."""
    from apache_beam.runners.worker import data_plane

    from lazaret import beam_worker

    before = (data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD,
              data_plane.SizeBasedBufferingClosableOutputStream()._size_flush_threshold)
    assert before[0] == before[1] > spill.DATA_FLUSH_BYTES
    with spill.install():
        stream = data_plane.SizeBasedBufferingClosableOutputStream()
        assert stream._size_flush_threshold == data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD == spill.DATA_FLUSH_BYTES
        flushed = []
        stream = data_plane.SizeBasedBufferingClosableOutputStream(flush_callback=flushed.append)
        stream.write(b"x" * (spill.DATA_FLUSH_BYTES // 2))
        stream.maybe_flush()
        assert flushed == []
        stream.write(b"x" * spill.DATA_FLUSH_BYTES)
        stream.maybe_flush()
        assert [len(b) for b in flushed] == [spill.DATA_FLUSH_BYTES * 3 // 2]
    assert (data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD,
            data_plane.SizeBasedBufferingClosableOutputStream()._size_flush_threshold) == before
    monkeypatch.setattr(data_plane, "_DEFAULT_SEND_QUEUE_MAX_BYTES", data_plane._DEFAULT_SEND_QUEUE_MAX_BYTES)
    init = data_plane.SizeBasedBufferingClosableOutputStream.__init__
    saved = (data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD, init.__defaults__)  # Beam's own, restored below
    try:
        beam_worker.bound_queues()  # what a local worker does at start
        assert data_plane._DEFAULT_SIZE_FLUSH_THRESHOLD == spill.DATA_FLUSH_BYTES
        assert data_plane.SizeBasedBufferingClosableOutputStream()._size_flush_threshold == spill.DATA_FLUSH_BYTES
    finally:
        spill.restore_data_flush(saved)
