"""The mix (issue 23, item 4): decisions are made from findings alone, and each block of an input file is read
again to write its records. A block read again must yield exactly the records the first read yielded
(formats, blank lines, a BOM, CRLF, rejects, oversize lines, gzip, zstd, Parquet), and a file that changed
between the two reads must fail the run rather than let unchecked records through."""

from __future__ import annotations

import gzip
import hashlib
import json
import pathlib

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from lazaret.graph import decide as decide_mod
from lazaret.graph.packing import pack
from lazaret.io import readers
from lazaret.io.readers import ReadFile


def _lines():
    rows = []
    for i in range(23):
        if i % 7 == 3:
            rows.append(b"")  # blank: not a record
        if i % 5 == 4:
            rows.append(b'{"id": "bad", "text": ')  # invalid JSON: a reject
        if i % 9 == 8:
            rows.append(b'{"id": "big", "text": "' + b"x" * 300 + b'"}')  # over the record limit
        if i % 4 == 1:
            rows.append(json.dumps({"id": f"a{i}", "instruction": f"q {i}", "output": f"r {i}"}).encode())
        else:
            rows.append(json.dumps({"id": f"t{i}", "text": f"text {i} caf\u00e9"}, ensure_ascii=False).encode())
    return rows


def _write(tmp_path, kind: str):
    lines = _lines()
    body = b"\xef\xbb\xbf" + b"\r\n".join(lines[:10]) + b"\r\n" + b"\n".join(lines[10:])  # BOM, CRLF, no final \n
    if kind == "jsonl":
        path = tmp_path / "c.jsonl"
        path.write_bytes(body)
    elif kind == "gz":
        path = tmp_path / "c.jsonl.gz"
        path.write_bytes(gzip.compress(body[: len(body) // 2]) + gzip.compress(body[len(body) // 2:]))
    elif kind == "zst":
        path = tmp_path / "c.jsonl.zst"
        path.write_bytes(zstandard.ZstdCompressor().compress(body))
    else:
        path = tmp_path / "c.parquet"
        rows = [json.loads(line) for line in lines if line.strip() and line.endswith(b"}") and b"big" not in line]
        table = pa.table({"id": [r["id"] for r in rows],
                          "text": [r.get("text") or r.get("output") for r in rows]})
        pq.write_table(table, path, row_group_size=4)
    return str(path)


def _first_read(reader, path):
    records, blocks = [], []
    for out in reader.process(path):
        if isinstance(out, beam.pvalue.TaggedOutput):
            if out.tag == ReadFile.BLOCK:
                blocks.append(out.value)
        else:
            records.append(out)
    return records, blocks


def _assert_lazy_read_matches(reader, blocks):
    """``read_block_lazily`` (the mix's read) gives ``read_block``'s records: the same doc_id, path, index and
    parsed value per record, and the same record when built. Returns how many blocks were read without building
    their records (those where the first read met no reject and knew the format)."""
    lazy_blocks = 0
    for b in blocks:
        eager = list(reader.quiet().read_block(b))
        lazy = list(reader.quiet().read_block_lazily(b))
        assert [(d, p, i, raw) for d, p, i, raw, _build in lazy] == [
            (r["doc_id"], r["source_path"], r["source_index"], r["raw"]) for r in eager]
        assert [build() for *_rest, build in lazy] == eager
        lazy_blocks += not b["rejects"] and b["fmt"] is not None and not b["path"].endswith(".parquet")
    return lazy_blocks


@pytest.mark.parametrize("kind", ["jsonl", "gz", "zst", "parquet"])
def test_blocks_read_again_yield_the_same_records(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(readers, "BLOCK_RECORDS", 4)
    path = _write(tmp_path, kind)
    reader = ReadFile(max_record_bytes=200)
    records, blocks = _first_read(reader, path)
    assert len(records) > 12 and len(blocks) >= 4
    again = [r for b in blocks for r in reader.quiet().read_block(b)]
    assert again == records
    lazy_blocks = _assert_lazy_read_matches(reader, blocks)
    assert lazy_blocks >= (1 if kind != "parquet" else 0)
    for b in blocks:
        ids = [r["doc_id"] for r in reader.read_block(b)]
        assert len(ids) == b["records"]
        assert hashlib.sha256("".join(ids).encode()).hexdigest() == b["digest"]


def test_a_file_changed_between_the_reads_fails_the_mix(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "BLOCK_RECORDS", 4)
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"id": f"t{i}", "text": f"text {i}"}) + "\n" for i in range(10)))
    reader = ReadFile()
    records, blocks = _first_read(reader, str(path))
    mix = decide_mod.Mix(reader)
    outputs = list(mix.process((0, {"block": blocks, "decisions": []})))
    assert len([o for o in outputs if not isinstance(o, beam.pvalue.TaggedOutput)]) == 10
    path.write_text("".join(json.dumps({"id": f"t{i}", "text": f"changed {i}"}) + "\n" for i in range(10)))
    with pytest.raises(decide_mod.InputChanged):
        list(mix.process((0, {"block": blocks, "decisions": []})))


def test_a_decision_without_its_record_fails_the_mix(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"text": "one"}) + "\n")
    reader = ReadFile()
    _records, blocks = _first_read(reader, str(path))
    listed = pack([("0" * 32, decide_mod.dump_decision(decide_mod.decide([])))])
    element = (0, {"block": blocks, "decisions": [listed]})
    with pytest.raises(decide_mod.InputChanged):
        list(decide_mod.Mix(reader).process(element))


def test_findings_packed_in_batches_write_the_same_shards(tmp_path, monkeypatch):
    """Rows packed per bundle and shard (io.writers._PackBatches) give the same files as rows packed one by one,
    whatever the batch size and the bound on what a bundle holds."""
    from lazaret.io import writers
    from lazaret.io.writers import WriteManifests

    monkeypatch.setattr(writers._PackBatches, "MAX_PENDING_ROWS", 7)

    rows = [("findings", {"doc_id": hashlib.sha256(str(i).encode()).hexdigest()[:32], "record_id": f"r{i}",
                          "check": "toxicity", "rule": "toxic", "side": side, "score": i / 100, "detail": ""})
            for i in range(57) for side in ("prompt", "response")]
    digests = []
    for batch_rows in (1, 5, 1000):
        out = tmp_path / f"b{batch_rows}"
        (out / "findings").mkdir(parents=True)
        with beam.Pipeline() as p:
            _ = (p | beam.Create(rows)
                 | WriteManifests(str(out), {"findings": ("parquet", "finding", 40, None)}, batch_rows))
        files = sorted((out / "findings").iterdir())
        assert len(files) == 3
        digests.append([hashlib.sha256(f.read_bytes()).hexdigest() for f in files])
    assert digests[1:] == digests[:1] * 2


def test_one_writer_for_several_manifests_writes_what_a_writer_each_wrote(tmp_path, monkeypatch):
    """clean/, held/ and quarantine/ cross one shuffle (io.writers.WriteManifests, to cut the paths Flink's
    optimizer walks): each manifest still gets its own shard count and the very bytes a writer of its own
    gives it, and a manifest with no row gets no shard."""
    from lazaret.graph.decide import reject_row
    from lazaret.io import writers
    from lazaret.io.writers import WriteManifests

    monkeypatch.setattr(writers._PackBatches, "MAX_PENDING_ROWS", 7)

    def doc(i: int) -> str:
        return hashlib.sha256(str(i).encode()).hexdigest()[:32]

    lines = {kind: [{"doc_id": doc(i), "source_path": f"in/{kind}.jsonl", "source_index": i,
                     "line": json.dumps({"text": f"{kind} record {i % 7}"})} for i in range(n)]
             for kind, n in (("clean", 95), ("held", 0))}
    rejects = [reject_row({"doc_id": doc(1000 + i), "source_path": "in/q.jsonl", "source_index": i,
                           "content_sha256": doc(2000 + i), "rule": "not_json", "detail": "line 1"})
               for i in range(23)]
    manifests = {"clean": ("jsonl", "source", 20, "clean_index"), "held": ("jsonl", "source", 20, "held_index"),
                 "quarantine": ("parquet", "source", 10, None)}
    rows = {"clean": lines["clean"], "held": lines["held"], "quarantine": rejects}

    def files(out):
        return {str(f.relative_to(out)): hashlib.sha256(f.read_bytes()).hexdigest()
                for f in sorted(out.rglob("*")) if f.is_file()}

    one, apart = tmp_path / "one", tmp_path / "apart"
    for out in (one, apart):
        for kind in ("clean", "held", "quarantine", "clean_index", "held_index"):
            (out / kind).mkdir(parents=True)
    tagged = [(kind, r) for kind in sorted(rows) for r in rows[kind]]
    with beam.Pipeline() as p:
        _ = p | beam.Create(tagged) | WriteManifests(str(one), manifests, 5)
    with beam.Pipeline() as p:
        for kind, manifest in manifests.items():
            _ = (p | f"C{kind}" >> beam.Create([(kind, r) for r in rows[kind]])
                 | f"W{kind}" >> WriteManifests(str(apart), {kind: manifest}, 5))
    written = files(one)
    assert written == files(apart)
    assert sorted(n for n in written if n.startswith("clean/")) == [f"clean/part-{i:05d}-of-00005.jsonl.gz"
                                                                   for i in range(5)]
    assert len([n for n in written if n.startswith("quarantine/")]) == 3
    assert not [n for n in written if n.startswith("held")]


def _outputs(outs):
    """(records, rejects, file rows, blocks, tasks) of a reader's outputs."""
    found = {"records": [], ReadFile.REJECT: [], ReadFile.FILE: [], ReadFile.BLOCK: [], ReadFile.TASK: []}
    for out in outs:
        if isinstance(out, beam.pvalue.TaggedOutput):
            found[out.tag].append(out.value)
        else:
            found["records"].append(out)
    return found


def _split_read(reader, path):
    """A JSONL file read as the scan reads it with ``split``: the first pass, then every task."""
    first = _outputs(reader.process(path))
    assert not first["records"] and not first[ReadFile.BLOCK]
    tasks = [_outputs(reader.read_task(t)) for t in first[ReadFile.TASK]]
    for t in tasks:
        assert not t[ReadFile.FILE] and not t[ReadFile.TASK]
    return {"records": [r for t in tasks for r in t["records"]],
            ReadFile.REJECT: first[ReadFile.REJECT] + [r for t in tasks for r in t[ReadFile.REJECT]],
            ReadFile.FILE: first[ReadFile.FILE],
            ReadFile.BLOCK: [b for t in tasks for b in t[ReadFile.BLOCK]],
            ReadFile.TASK: first[ReadFile.TASK]}


@pytest.mark.parametrize("prefix", [b"", b"\xef\xbb\xbf\r\n\n[1]\n{\"id\": 3}\r\n\n"])
@pytest.mark.parametrize("fmt", ["auto", "text"])
@pytest.mark.parametrize("task_records,block_records", [(3, 4), (4, 8), (5000, 50000)])
@pytest.mark.parametrize("kind", ["jsonl", "gz", "gz-no-index"])
def test_a_file_read_in_tasks_gives_what_the_whole_read_gives(tmp_path, monkeypatch, prefix, fmt,
                                                              task_records, block_records, kind):
    """Every line ends in exactly one place, as when the file is read whole: records, rejects (bad JSON, an
    oversize line, lines before the format is known), the file row; BOM, CRLF, blank lines and a last line
    without a newline; tasks that do not line up with the mix's blocks; and the mix's blocks read again.
    Plain files by byte offset; gzip files (two members here) through their seek index, or without one by
    decompressing from the start."""
    monkeypatch.setattr(readers, "TASK_RECORDS", task_records)
    monkeypatch.setattr(readers, "BLOCK_RECORDS", block_records)
    path = _write(tmp_path, "jsonl")
    body = open(path, "rb").read()
    body = prefix + (body[3:] if prefix else body)
    if kind == "jsonl":
        open(path, "wb").write(body)
    else:
        path = path + ".gz"
        half = len(body) // 2
        open(path, "wb").write(gzip.compress(body[:half]) + gzip.compress(body[half:]))
    index_dir = str(tmp_path / "seek") if kind == "gz" else None
    whole = _outputs(ReadFile(fmt=fmt, max_record_bytes=200).process(path))
    if kind == "gz-no-index":  # not split without a folder for the index: read whole
        assert _outputs(ReadFile(fmt=fmt, max_record_bytes=200, split=True).process(path)) == whole
        return
    split = _split_read(ReadFile(fmt=fmt, max_record_bytes=200, split=True, index_dir=index_dir), path)
    indexed = [t["index"] for t in split[ReadFile.TASK]]
    if kind == "gz" and len(indexed) > 1:
        assert all(indexed) and len(set(indexed)) == 1
    else:
        assert not any(indexed)
    assert len(split[ReadFile.TASK]) == -(-whole[ReadFile.FILE][0]["records"] // task_records)
    assert split["records"] == whole["records"] and len(whole["records"]) > 10
    by_index = lambda rows: sorted(rows, key=lambda r: r["source_index"])  # noqa: E731
    assert by_index(split[ReadFile.REJECT]) == by_index(whole[ReadFile.REJECT]) and whole[ReadFile.REJECT]
    assert split[ReadFile.FILE] == whole[ReadFile.FILE]
    reader = ReadFile(fmt=fmt, max_record_bytes=200)
    blocks = split[ReadFile.BLOCK]
    assert all(b["offset"] is not None for b in blocks)
    assert {b["block"] for b in blocks} == {b["block"] for b in whole[ReadFile.BLOCK]}
    assert [r for b in blocks for r in reader.read_block(b)] == whole["records"]
    _assert_lazy_read_matches(reader, blocks)
    for b in blocks:
        ids = [r["doc_id"] for r in reader.read_block(b)]
        assert len(ids) == b["records"] and hashlib.sha256("".join(ids).encode()).hexdigest() == b["digest"]
    mix = decide_mod.Mix(reader)
    main = [o for o in mix.process((0, {"block": blocks, "decisions": []}))
            if not isinstance(o, beam.pvalue.TaggedOutput)]
    assert {kind for kind, _row in main} == {decide_mod.Mix.CLEAN}
    clean = [row for _kind, row in main]
    assert [c["doc_id"] for c in clean] == [r["doc_id"] for r in whole["records"]]


@pytest.mark.parametrize("body", [b"", b"\n\r\n  \n"])
def test_a_plain_file_without_records_is_one_reject_when_split(tmp_path, body):
    path = tmp_path / "e.jsonl"
    path.write_bytes(body)
    whole = _outputs(ReadFile().process(str(path)))
    split = _split_read(ReadFile(split=True), str(path))
    assert split[ReadFile.TASK] == [] and split["records"] == []
    assert split[ReadFile.REJECT] == whole[ReadFile.REJECT] and whole[ReadFile.REJECT][0]["rule"] == "empty_file"
    assert split[ReadFile.FILE] == whole[ReadFile.FILE]


def test_a_plain_file_changed_between_its_first_pass_and_a_task_fails_the_read(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "TASK_RECORDS", 4)
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"id": f"t{i}", "text": f"text {i}"}) + "\n" for i in range(10)))
    reader = ReadFile(split=True)
    tasks = _outputs(reader.process(str(path)))[ReadFile.TASK]
    assert [t["count"] for t in tasks] == [4, 4, 2]
    path.write_text("".join(json.dumps({"id": f"t{i}", "text": f"text {i}!"}) + "\n" for i in range(10)))
    with pytest.raises(decide_mod.InputChanged):
        list(reader.read_task(tasks[1]))
    path.write_text("".join(json.dumps({"id": f"t{i}", "text": f"text {i}"}) + "\n" for i in range(9)))
    with pytest.raises(decide_mod.InputChanged):
        list(reader.read_task(tasks[2]))


def test_a_damaged_gzip_file_is_read_whole_when_split(tmp_path, monkeypatch):
    """A truncated gzip stream keeps today's outcome: the records before the damage and one stream-error
    reject, read by the first pass itself (no tasks)."""
    monkeypatch.setattr(readers, "TASK_RECORDS", 3)
    body = "".join(json.dumps({"id": f"t{i}", "text": f"text {i} " * 20}) + "\n" for i in range(40)).encode()
    data = gzip.compress(body)
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(data[: len(data) * 2 // 3])
    whole = _outputs(ReadFile().process(str(path)))
    split = _outputs(ReadFile(split=True, index_dir=str(tmp_path / "seek")).process(str(path)))
    assert not split[ReadFile.TASK]
    assert split == whole and whole[ReadFile.FILE][0]["error"] == "truncated_stream"


def test_gzip_tasks_without_the_index_decompress_from_the_start(tmp_path, monkeypatch):
    """A task whose seek index is missing (none was written) reads its lines from the start of the stream."""
    monkeypatch.setattr(readers, "TASK_RECORDS", 4)
    path = tmp_path / "c.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps({"text": f"text {i}"}) + "\n" for i in range(10)).encode()))
    reader = ReadFile(split=True, index_dir=str(tmp_path / "seek"))
    tasks = _outputs(reader.process(str(path)))[ReadFile.TASK]
    assert len(tasks) == 3 and all(t["index"] for t in tasks)
    records = [r for t in tasks for r in _outputs(reader.read_task(dict(t, index=None)))["records"]]
    assert [r["source_index"] for r in records] == list(range(10))


def test_cluster_rows_get_their_members_masked_evidence(tmp_path):
    """clusters/ rows and their members' snippets from the mix meet in clusters/'s shuffle (graph/join.py): every
    cluster is written, each with min(size, 8) snippets (all its members are decided), members first."""
    from helpers import scan

    out = tmp_path / "out"
    sample = pathlib.Path(__file__).resolve().parent.parent / "sample_data"
    assert scan(sample, out, "--checks", "dedup", "--pii-nlp", "none", "--no-report") == 0
    rows = pq.read_table(out / "clusters").to_pylist()
    assert len(rows) >= 10
    for row in rows:
        assert len(row["evidence"]) == min(len(row["members"]), decide_mod.Mix.EVIDENCE_PER_CLUSTER)
        assert all(isinstance(text, str) and text for text in row["evidence"])
