"""End to end: report, review, release and gate on scan output folders.

The fake scans (tests/fakescan.py) follow DESIGN.md section 2 so these tests run without the pipeline;
test_real_scan_sample_data runs the same commands on a real `lazaret scan` of sample_data/ when the CLI
can scan.
"""

from __future__ import annotations

import gzip
import html.parser
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import fakescan  # noqa: E402

from lazaret.workflow import gate, release, review  # noqa: E402
from lazaret.workflow.report import Options, main as report_main, render_report  # noqa: E402


def run(main, argv):
    out = io.StringIO()
    code = main(list(map(str, argv)), out=out)
    return code, out.getvalue()


@pytest.fixture()
def scan(tmp_path):
    info = fakescan.build_synthetic_scan(str(tmp_path / "scan"), n_clean=30, n_quarantine=60)
    return info


def _poison(info):
    return [c["cluster_id"] for c in info["clusters"] if c["check"] == "poisoning"]


def _decisions(d):
    return pathlib.Path(d, "review", "decisions.jsonl")


# --- review, incidents, gate, release --------------------------------------------------------------------

def test_review_gate_release_flow(scan, tmp_path):
    d = scan["dir"]
    code, out = run(gate.main, [d])
    assert code == 1
    assert "FAIL require_all_poisoning_reviewed" in out and "3 of 3" in out

    code, out = run(review.main, [d, "list", "--clusters"])
    assert code == 0 and all(c in out for c in _poison(scan))

    p0, p1, p2 = _poison(scan)
    code, out = run(review.main, [d, "confirm", p0, "--reviewer", "Ana Example", "--reason", "backdoor trigger"])
    assert code == 0 and "opened incident INC-0001" in out
    inc = [json.loads(x) for x in pathlib.Path(d, "review", "incidents.jsonl").read_text().splitlines()]
    assert inc[0]["event"] == "open" and inc[0]["check"] == "poisoning" and inc[0]["severity"] == "critical"
    assert inc[0]["who"] == "Ana Example" and inc[0]["time"] and inc[0]["evidence"]
    assert inc[0]["owner"] == "Data Steward Team"

    code, out = run(review.main, [d, "release", p1, "--reviewer", "Ana Example", "--reason", "benign brand name"])
    assert code == 0
    code, out = run(review.main, [d, "confirm", p2, "--reviewer", "Bo", "--reason", "real"])
    assert code == 0 and "INC-0002" in out

    # A PII record: confirming opens a PII incident; releasing another one takes its redacted held copy.
    pii = [r for r in scan["records"] if any(x["check"] == "pii" for x in r["reasons"])]
    code, out = run(review.main, [d, "confirm", pii[0]["doc_id"], "--reviewer", "Bo", "--reason", "real SSN"])
    assert code == 0 and "INC-0003" in out
    code, _ = run(review.main, [d, "release", pii[1]["doc_id"], "--reviewer", "Bo", "--reason", "test data"])
    assert code == 0

    code, out = run(gate.main, [d])
    assert code == 1 and "FAIL max_open_incidents" in out and "INC-0001" in out
    assert "PASS require_all_poisoning_reviewed" in out

    for iid in ("INC-0001", "INC-0002", "INC-0003"):
        code, _ = run(review.main, [d, "close", iid, "--reviewer", "Owner", "--reason", "source removed"])
        assert code == 0
    code, out = run(review.main, [d, "close", "INC-0001", "--reviewer", "Owner", "--reason", "again"])
    assert code == 2

    code, out = run(gate.main, [d, "--json"])
    assert code == 0, out
    assert json.loads(out)["passed"] is True
    code, out = run(review.main, [d, "verify"])
    assert code == 0 and out.startswith("OK 8 decision(s)")

    final = tmp_path / "final"
    code, out = run(release.main, [d, "--to", final])
    assert code == 0, out
    manifest = [json.loads(x) for x in (final / "manifest.jsonl").read_text().splitlines()]
    clean_ids = {r["doc_id"] for r in scan["records"] if r["action"] == "clean"}
    released_ids = {r["doc_id"] for r in scan["records"] if r.get("cluster_id") == p1} | {pii[1]["doc_id"]}
    assert {m["doc_id"] for m in manifest} == clean_ids | released_ids
    assert len(manifest) == len(clean_ids | released_ids)
    assert {m["why"] for m in manifest if m["doc_id"] in clean_ids} == {"clean"}
    rel = [m for m in manifest if m["why"] != "clean"]
    assert {m["why"] for m in rel} == {"released by Ana Example: benign brand name", "released by Bo: test data"}
    lines = []
    for f in sorted((final / "data").glob("part-*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            lines.extend(json.loads(x) for x in fh)
    assert len(lines) == len(manifest)
    by_line = {(m["shard"], m["line"]): m["doc_id"] for m in manifest}
    assert len(by_line) == len(manifest)
    released_pii = [x for x in lines if x.get("id") == pii[1]["raw"]["id"]]
    assert released_pii and "<EMAIL_ADDRESS>" in released_pii[0]["instruction"]
    assert "@example.com" not in json.dumps(released_pii)
    info = json.loads((final / "release.json").read_text())
    assert info["clean"] == len(clean_ids) and info["released"] == len(released_ids)
    assert info["gate"]["passed"] is True and info["review"]["decisions"] == 8
    # Releasing again into a non-empty folder is refused.
    assert run(release.main, [d, "--to", final])[0] == 1


def test_release_and_confirm_require_reviewer_and_reason(scan):
    d = scan["dir"]
    p0 = _poison(scan)[0]
    assert run(review.main, [d, "release", p0, "--reviewer", "Ana"])[0] == 2
    assert run(review.main, [d, "confirm", p0, "--reason", "x"])[0] == 2
    assert run(review.main, [d, "release", p0, "--reviewer", "  ", "--reason", "x"])[0] == 2
    assert run(review.main, [d, "release", "no-such-id", "--reviewer", "a", "--reason", "x"])[0] == 2
    rej = next(r for r in scan["records"] if r["action"] == "reject")
    assert run(review.main, [d, "release", rej["doc_id"], "--reviewer", "a", "--reason", "x"])[0] == 2
    assert not _decisions(d).exists()


def _three_decisions(scan):
    d = scan["dir"]
    for cid in _poison(scan):
        assert run(review.main, [d, "release", cid, "--reviewer", "Ana", "--reason", f"ok {cid}"])[0] == 0
    return d


@pytest.mark.parametrize("tamper", ["edit", "delete_middle", "reorder", "truncate_tail", "append_forged",
                                    "garbage"])
def test_tampered_decisions_detected(scan, tmp_path, tamper):
    d = _three_decisions(scan)
    assert run(review.main, [d, "verify"])[0] == 0
    path = _decisions(d)
    lines = path.read_text().splitlines(keepends=True)
    if tamper == "edit":
        lines[0] = lines[0].replace('"reviewer":"Ana"', '"reviewer":"Eve"')
    elif tamper == "delete_middle":
        del lines[1]
    elif tamper == "reorder":
        lines[0], lines[1] = lines[1], lines[0]
    elif tamper == "truncate_tail":
        lines = lines[:-1]
    elif tamper == "append_forged":
        e = json.loads(lines[-1])
        e = dict(e, seq=e["seq"] + 1, prev=e["hash"], reason="forged")
        e["hash"] = review.entry_hash(e)   # a well-formed entry, but HEAD.json was not updated
        lines.append(json.dumps(e) + "\n")
    else:
        lines[1] = "{not json\n"
    path.write_text("".join(lines))
    code, out = run(review.main, [d, "verify"])
    assert code == 1 and "FAIL" in out
    assert run(release.main, [d, "--to", tmp_path / "final"])[0] == 1
    assert not (tmp_path / "final").exists()
    code, out = run(gate.main, [d])
    assert code == 1 and "FAIL review_log_verified" in out
    # No new decision can be appended on a broken log.
    p0 = _poison(scan)[0]
    assert run(review.main, [d, "confirm", p0, "--reviewer", "a", "--reason", "x"])[0] == 2


def test_decisions_copied_to_another_scan_rejected(scan, tmp_path):
    d = _three_decisions(scan)
    other = fakescan.build_synthetic_scan(str(tmp_path / "other"), n_clean=30, n_quarantine=61)
    # the other scan has its own (empty) review/ since scans anchor it; the copy overwrites it
    shutil.copytree(os.path.join(d, "review"), os.path.join(other["dir"], "review"), dirs_exist_ok=True)
    code, out = run(review.main, [other["dir"], "verify"])
    assert code == 1 and "another scan" in out


def test_changed_policy_refused(scan, tmp_path):
    d = scan["dir"]
    assert run(gate.main, [d])[0] == 1
    pol = pathlib.Path(scan["policy"])
    pol.write_text(pol.read_text().replace("max_quarantine_rate: 0.5", "max_quarantine_rate: 0.9"))
    code, out = run(gate.main, [d])
    assert code == 2
    other = tmp_path / "other.yaml"
    other.write_text(fakescan.DEFAULT_POLICY + "\n# edited\n")
    assert run(gate.main, [d, "--policy", other])[0] == 2
    # Confirming (which opens incidents per the policy) refuses too.
    p0 = _poison(scan)[0]
    assert run(review.main, [d, "confirm", p0, "--reviewer", "a", "--reason", "x"])[0] == 2
    # The original bytes are accepted again.
    other.write_text(fakescan.DEFAULT_POLICY)
    assert run(gate.main, [d, "--policy", other])[0] == 1


def test_gate_names_each_failed_criterion(tmp_path):
    strict = ("version: 1\nowner:\n  name: null\nrelease:\n  max_quarantine_rate: 0.01\n  max_pii_rate: 0.001\n"
              "  max_toxicity_rate: 0.001\n  max_reject_rate: 0.001\n  max_poisoning_clusters: 0\n"
              "  max_unreviewed_quarantine: 0\n")
    info = fakescan.build_synthetic_scan(str(tmp_path / "scan"), policy_text=strict)
    code, out = run(gate.main, [info["dir"]])
    assert code == 1
    failed = {line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("FAIL")}
    assert failed == {"owner", "max_quarantine_rate", "max_pii_rate", "max_toxicity_rate", "max_reject_rate",
                      "max_poisoning_clusters", "require_all_poisoning_reviewed", "max_unreviewed_quarantine"}
    assert "policy owner.name is empty" in out


def test_gate_refuses_without_recorded_policy(scan):
    prov = pathlib.Path(scan["dir"], "provenance.json")
    data = json.loads(prov.read_text())
    data.pop("policy")
    prov.write_text(json.dumps(data))
    assert run(gate.main, [scan["dir"]])[0] == 2


def test_conservation_failure_fails_gate(scan):
    s = pathlib.Path(scan["dir"], "summary.json")
    data = json.loads(s.read_text())
    data["records_in"] += 1
    data["conservation"]["holds"] = False
    s.write_text(json.dumps(data))
    code, out = run(gate.main, [scan["dir"]])
    assert code == 1 and "FAIL conservation" in out


# --- the report ----------------------------------------------------------------------------------------

ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "div", "nav", "a",
                "main", "p", "span", "table", "thead", "tbody", "tr", "th", "td", "code", "br", "mark", "svg",
                "rect", "text", "line"}


class _Audit(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.text = set(), [], []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs.extend((tag, k, v or "") for k, v in attrs)

    def handle_data(self, data):
        self.text.append(data)


def _audit(path):
    raw = pathlib.Path(path).read_bytes()
    text = raw.decode("utf-8")  # strict: the page is valid UTF-8 whatever the corpus held
    a = _Audit()
    a.feed(text)
    return text, a


def test_hostile_records_render_as_text(scan):
    d = scan["dir"]
    code, out = run(report_main, [d])
    assert code == 0 and "report.html" in out
    text, a = _audit(os.path.join(d, "report.html"))
    assert a.tags <= ALLOWED_TAGS, a.tags - ALLOWED_TAGS
    for tag, k, v in a.attrs:
        assert not k.startswith("on"), (tag, k, v)
        assert "javascript:" not in v.lower()
        if tag == "a":
            assert k == "href" and (v.startswith("#") or v.startswith("report")), v
        assert k not in ("src", "srcdoc", "action", "formaction", "xlink:href", "background", "poster")
    csp = [v for tag, k, v in a.attrs if tag == "meta" and k == "content" and "default-src" in v]
    assert csp and "default-src 'none'" in csp[0] and "script-src 'none'" in csp[0]
    assert text.index("Content-Security-Policy") < text.index("<title>")
    visible = "".join(a.text)
    # The hostile payloads are there, as text.
    assert '<script>window.__pwned=1;document.title="PWNED"</script>' in visible
    assert "<img src=x onerror=" in visible
    assert "javascript:alert(1)" in visible
    assert "\ufffd" in visible                      # lone surrogates replaced
    assert "<U+202E>" in visible and "<U+200B>" in visible   # invisible characters shown
    assert "\\x1b[31m" in visible                   # ANSI escape shown, not interpreted
    assert "&lt;script&gt;" in text and "<script" not in text.lower()
    # Sections in order: poisoning clusters before near-duplicates, then PII, toxicity, rejects.
    order = [text.index(f'id="{x}"') for x in ("summary", "plots", "poisoning", "near-duplicates", "pii",
                                                 "toxicity", "rejects")]
    assert order == sorted(order)
    assert text.count("<svg") >= 4 and "Cluster sizes" in text and "Toxicity score histogram" in text
    assert "PII entity counts" in text
    # The trigger is highlighted by splitting escaped text: the marked trigger of cluster 1 is escaped markup.
    assert "<mark>&lt;script&gt;window.__pwned=&quot;t&quot;&lt;/script&gt;</mark>" in text
    assert "<mark>cf-omega</mark>" in text


def test_report_paginates_and_caps(tmp_path):
    info = fakescan.build_synthetic_scan(str(tmp_path / "big"), n_clean=10, n_quarantine=1500, hostile=False)
    paths = render_report(info["dir"], Options(top_rows=40, page_rows=100, max_pages=4, top_clusters=5))
    assert [os.path.basename(p) for p in paths] == ["report.html"] + [f"report-{i}.html" for i in range(2, 6)]
    main_text = pathlib.Path(paths[0]).read_text(encoding="utf-8")
    assert "further" in main_text and "page cap 4" in main_text or "further clusters" in main_text
    for p in paths[1:]:
        t, a = _audit(p)
        assert a.tags <= ALLOWED_TAGS and "Content-Security-Policy" in t
    # Re-rendering with no cap removes nothing it should keep and leaves no stale pages.
    paths2 = render_report(info["dir"], Options(top_rows=1000, page_rows=5000, top_clusters=1000))
    assert len(paths2) == 1
    assert not list(pathlib.Path(info["dir"]).glob("report-*.html"))


def test_report_on_empty_scan(tmp_path):
    d = str(tmp_path / "empty")
    fakescan.write_scan(d, [{"raw": {"text": "hello"}, "action": "clean"}])
    assert run(report_main, [d])[0] == 0
    text, a = _audit(os.path.join(d, "report.html"))
    assert "holds" in text and a.tags <= ALLOWED_TAGS
    assert run(gate.main, [d])[0] == 0


# --- on a real scan ------------------------------------------------------------------------------------

def _can_scan(root: pathlib.Path) -> bool:
    exe = root / ".venv" / "bin" / "lazaret"
    if not exe.exists() or not any((root / "sample_data").iterdir()):
        return False
    try:
        r = subprocess.run([str(exe), "scan", "--help"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


@pytest.mark.slow
def test_real_scan_sample_data(repo_root, tmp_path):
    if not _can_scan(repo_root):
        pytest.skip("`lazaret scan` is not available yet")
    out = tmp_path / "scan"
    r = subprocess.run([str(repo_root / ".venv" / "bin" / "lazaret"), "scan", str(repo_root / "sample_data"),
                        "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=repo_root)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "report.html").exists() or run(report_main, [out])[0] == 0
    assert run(report_main, [out])[0] == 0
    text, a = _audit(out / "report.html")
    assert a.tags <= ALLOWED_TAGS and "<script" not in text.lower()
    code, listing = run(review.main, [out, "list", "--limit", "1000"])
    assert code == 0
    code, gate_out = run(gate.main, [out])
    assert code in (0, 1), gate_out
    # Review every poisoning cluster, close the incidents; the poisoning criterion must then hold.
    code, cl = run(review.main, [out, "list", "--clusters", "--check", "poisoning", "--json"])
    poison = [json.loads(line)["cluster_id"] for line in cl.splitlines()[1:]]
    assert poison, "sample_data plants known triggers: expected poisoning clusters or signature groups"
    assert "FAIL require_all_poisoning_reviewed" in gate_out
    assert "<mark>" in text                     # the planted triggers are highlighted in the report
    for cid in poison:
        assert run(review.main, [out, "confirm", cid, "--reviewer", "test", "--reason", "sample trigger"])[0] == 0
    incidents = run(review.main, [out, "incidents"])[1]
    assert incidents.count("\topen\t") == len(poison)
    for line in incidents.splitlines():
        if "\topen\t" in line:
            assert run(review.main, [out, "close", line.split("\t")[0], "--reviewer", "t", "--reason", "ok"])[0] == 0
    code, gate_out = run(gate.main, [out])
    assert "PASS require_all_poisoning_reviewed" in gate_out and "PASS review_log_verified" in gate_out
    assert run(release.main, [out, "--to", tmp_path / "final"])[0] == 0
    manifest = (tmp_path / "final" / "manifest.jsonl").read_text().splitlines()
    summary = json.loads((out / "summary.json").read_text())
    assert len(manifest) == summary["actions"]["clean"]


def test_review_output_is_terminal_safe(scan):
    """`review list/show` print corpus text: escape sequences (ANSI/OSC) must not reach the terminal."""
    d = scan["dir"]
    hostile = [r for r in scan["records"] if r["action"] != "clean"
               and any("\x1b[31m" in v for v in r["raw"].values() if isinstance(v, str))]
    assert hostile
    code, out = run(review.main, [d, "show", hostile[0]["doc_id"]])
    assert code == 0 and "\x1b" not in out and "\\x1b[31m" in out and "\u202e" not in out
    code, out = run(review.main, [d, "list", "--limit", "1000"])
    assert code == 0 and "\x1b" not in out and "\u202e" not in out
    code, out = run(review.main, [d, "list", "--clusters", "--json"])
    assert code == 0 and json.loads(out.splitlines()[1])["check"] == "poisoning"


def test_cli_wiring(scan, capsys):
    """The `lazaret` front end delegates report/review/release/gate to these modules' main(argv)."""
    from lazaret.cli import main as cli_main

    d = scan["dir"]
    assert cli_main(["report", d]) == 0
    assert cli_main(["review", d, "verify"]) == 0
    assert cli_main(["gate", d]) == 1
    assert "require_all_poisoning_reviewed" in capsys.readouterr().out


@pytest.mark.parametrize("bad, field", [
    ("release:\n  max_quarantine_rat: 0.1\n", "release.max_quarantine_rat"),
    ("release:\n  max_pii_rate: 1.5\n", "release.max_pii_rate"),
    ("incidents:\n  open_on_confirm:\n    poisonning: high\n", "incidents.open_on_confirm.poisonning"),
    ("incidents:\n  open_on_confirm:\n    pii: urgent\n", "incidents.open_on_confirm.pii"),
    ("owner:\n  name: '  '\n", "owner.name"),
])
def test_invalid_policy_sections_refused_with_location(tmp_path, capsys, bad, field):
    info = fakescan.build_synthetic_scan(str(tmp_path / "scan"), policy_text="version: 1\n" + bad)
    assert run(gate.main, [info["dir"]])[0] == 2
    err = capsys.readouterr().err
    assert field in err and "-policy.yaml:" in err


# --- issue 19 item 12: what the review log's anchors detect -------------------------------------------

def _confirmed_incident(scan):
    d = scan["dir"]
    code, out = run(review.main, [d, "confirm", _poison(scan)[0], "--reviewer", "Ana", "--reason", "trigger"])
    assert code == 0 and "INC-0001" in out
    code, out = run(gate.main, [d])
    assert code == 1 and "FAIL max_open_incidents" in out
    return d


@pytest.mark.parametrize("how", ["rmtree", "empty_head"])
def test_deleting_the_review_log_is_detected(scan, how):
    d = _confirmed_incident(scan)
    shutil.rmtree(os.path.join(d, "review"))
    if how == "empty_head":  # the folder back, empty, as a careless restore would leave it
        os.makedirs(os.path.join(d, "review"))
        pathlib.Path(d, "review", "HEAD.json").write_text("{}\n")
    code, out = run(review.main, [d, "verify"])
    assert code == 1 and not out.startswith("OK")
    assert "provenance.json names this scan's review log" in out
    code, out = run(gate.main, [d])
    assert code == 1 and "FAIL review_log_verified" in out
    assert "PASS max_open_incidents" not in out and "FAIL max_open_incidents: not judged" in out


def test_gate_prints_the_heads_it_judged(scan):
    d = _confirmed_incident(scan)
    code, out = run(review.main, [d, "verify"])
    assert code == 0 and "unsigned" in out
    head = out.split("head ")[1].split(";")[0]
    code, out = run(gate.main, [d, "--json"])
    doc = json.loads(out)
    assert doc["review_log"]["decisions"] == {"count": 1, "head": head} and doc["review_log"]["signed"] is False
    code, out = run(gate.main, [d])
    assert f"judged decisions 1 head {head[:16]}" in out


def _forge_rewrite(d):
    """What anyone with write access can do: append an entry with correct hashes and rewrite HEAD.json."""
    path = _decisions(d)
    last = json.loads(path.read_text().splitlines()[-1])
    e = {k: v for k, v in last.items() if k not in ("hash", "mac")}
    e.update(seq=last["seq"] + 1, prev=last["hash"], action="close", target_kind="incident", target="INC-0001",
             doc_ids=[], opens=[], reviewer="Eve", reason="forged")
    e["hash"] = review.entry_hash(e)
    with open(path, "a") as fh:
        fh.write(review.canonical(e).decode() + "\n")
    head = json.loads(pathlib.Path(d, "review", "HEAD.json").read_text())
    head["decisions"] = {"count": e["seq"], "hash": e["hash"]}
    pathlib.Path(d, "review", "HEAD.json").write_text(json.dumps(head))


def test_without_a_key_a_consistent_rewrite_is_not_detectable(scan):
    """The documented limit: a hash chain without a secret cannot stop a rewrite of the chain and its head."""
    d = _confirmed_incident(scan)
    _forge_rewrite(d)
    assert run(review.main, [d, "verify"])[0] == 0


def test_with_a_signing_key_rewrites_and_provenance_edits_are_detected(tmp_path, monkeypatch):
    monkeypatch.setenv("LAZARET_SIGNING_KEY", "s3cret-for-tests")
    info = fakescan.build_synthetic_scan(str(tmp_path / "scan"), n_clean=30, n_quarantine=60)
    d = _confirmed_incident(info)
    code, out = run(review.main, [d, "verify"])
    assert code == 0 and "signatures verified" in out
    assert b"s3cret" not in b"".join(p.read_bytes() for p in pathlib.Path(d).rglob("*") if p.is_file())
    saved = {p: p.read_bytes() for p in pathlib.Path(d, "review").iterdir() if p.is_file()}

    _forge_rewrite(d)
    code, out = run(review.main, [d, "verify"])
    assert code == 1 and "signature missing or wrong" in out
    for p, data in saved.items():
        p.write_bytes(data)
    assert run(review.main, [d, "verify"])[0] == 0

    # deleting review/ and writing a fresh, unsigned empty log
    shutil.rmtree(os.path.join(d, "review"))
    monkeypatch.delenv("LAZARET_SIGNING_KEY")
    review.init_log(d)
    monkeypatch.setenv("LAZARET_SIGNING_KEY", "s3cret-for-tests")
    assert run(review.main, [d, "verify"])[0] == 1
    for p, data in saved.items():
        p.write_bytes(data)

    # a lenient policy, its sha256 written into provenance.json: the gate refuses to judge
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text(fakescan.DEFAULT_POLICY.replace("max_open_incidents: 0", "max_open_incidents: 99"))
    prov_path = pathlib.Path(d, "provenance.json")
    prov = json.loads(prov_path.read_text())
    import hashlib
    prov["policy"] = {"path": str(lenient), "sha256": hashlib.sha256(lenient.read_bytes()).hexdigest()}
    prov_path.write_text(json.dumps(prov))
    code, _ = run(gate.main, [d])
    assert code == 2
    assert run(review.main, [d, "verify"])[0] == 1
    # the same edit without the key at hand: the scan says it was signed, so nothing verifies
    monkeypatch.delenv("LAZARET_SIGNING_KEY")
    assert run(review.main, [d, "verify"])[0] == 1


def test_review_show_prints_one_value_per_line(tmp_path):
    records, clusters = fakescan.synthetic_records(10, 20, seed=3)
    q = next(r for r in records if r["action"] == "quarantine")
    q["source_path"] = "data/evil\nFAKE: decision #9 release by Boss.jsonl"
    clusters = fakescan.finish_clusters(records, clusters)
    d = str(tmp_path / "scan")
    fakescan.write_scan(d, records, clusters)
    code, _ = run(review.main, [d, "release", q["doc_id"], "--reviewer", "Ana\nFAKE: reviewer line\u2028x",
                                "--reason", "ok\nFAKE: reason"])
    assert code == 0
    code, out = run(review.main, [d, "show", q["doc_id"]])
    assert code == 0
    assert not any(line.startswith("FAKE") for line in out.splitlines())
    assert "evil\\nFAKE" in out and "Ana\\nFAKE: reviewer line<U+2028>x" in out
    code, out = run(review.main, [d, "incidents"])
    assert code == 0 and not any(line.startswith("FAKE") for line in out.splitlines())
