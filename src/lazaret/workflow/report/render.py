"""Render ``DIR/report.html`` (plus ``report-2.html``... overflow pages) from a finished scan.

Why like this: the report is opened by reviewers on their own machines from a folder full of hostile
text. So: every corpus string goes through ``safetext.h``/``highlight`` (escaped, invisible characters made
visible), no script at all, a Content-Security-Policy that forbids every fetch (default-src 'none'), URLs
never become links, and each page is bounded (top rows per section on the first page, fixed-size
overflow pages, a page cap), so 100k quarantined rows never make a 500 MB page.
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from lazaret import __version__
from lazaret.workflow.report import svg
from lazaret.workflow.report.safetext import h, highlight
from lazaret.workflow.scandir import ACTIONS, ScanDir, row_checks

CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
       "frame-src 'none'; object-src 'none'; script-src 'none'")
EVIDENCE_CHARS = 300
DETAIL_CHARS = 200

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1d;background:#fafafa}
header{background:#2e3436;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header .sub{color:#d3d7cf;font-size:12px;word-break:break-all}
nav{padding:6px 24px;background:#eeeeec;border-bottom:1px solid #d3d7cf;font-size:13px}
nav a{margin-right:14px;color:#204a87}
main{padding:8px 24px 40px;max-width:1300px}
h2{border-bottom:2px solid #babdb6;padding-bottom:3px;margin-top:30px}
table{border-collapse:collapse;margin:6px 0;font-size:13px;width:100%}
th,td{border:1px solid #d3d7cf;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eeeeec}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.small{width:auto}
.mono,code,td.id{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.ev{white-space:pre-wrap;word-break:break-word;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;
max-height:12em;overflow:auto}
.ok{color:#4e9a06;font-weight:bold}.bad{color:#cc0000;font-weight:bold}
.eq{font-family:ui-monospace,Menlo,Consolas,monospace;padding:6px 10px;border-radius:4px;display:inline-block}
.eq.ok{background:#e6f4d9}.eq.bad{background:#fbe3e3}
.plots{display:flex;flex-wrap:wrap;gap:12px}.chart{background:#fff;border:1px solid #d3d7cf}
.chart .ct{font:bold 13px sans-serif}.chart .cl{font:11px sans-serif;fill:#555}
.chart .grid{stroke:#eee}.chart .axis{stroke:#888}
.cluster{background:#fff;border:1px solid #d3d7cf;border-left:5px solid #cc0000;margin:12px 0;padding:8px 12px}
.cluster.nd{border-left-color:#3465a4}
.cluster h3{margin:0 0 4px;font-size:15px}
.members{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:8px;margin-top:6px}
.member{border:1px solid #e0e0e0;background:#fcfcfc;padding:6px;font-size:12px}
.member .id{color:#555;font-family:ui-monospace,Menlo,monospace;font-size:11px}
mark{background:#fce94f;color:#000;padding:0 1px;border-radius:2px}
.badge{display:inline-block;padding:0 6px;border-radius:8px;font-size:11px;background:#eeeeec;border:1px solid #babdb6}
.badge.released{background:#e6f4d9}.badge.confirmed{background:#fbe3e3}.badge.unreviewed{background:#fff6d5}
.more{font-size:13px;color:#555}.pages a{margin-right:6px}
.note{color:#555;font-size:12px}
"""


@dataclass
class Options:
    top_rows: int = 100          # rows per section on the first page
    page_rows: int = 2000        # rows per overflow page
    max_pages: int = 200         # overflow pages in total; beyond: counted, listed by `lazaret review list`
    top_clusters: int = 30       # poisoning / near-duplicate clusters on the first page (each)
    members_shown: int = 6       # members side by side per cluster


def _page(title: str, body: str, subtitle: str = "") -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            "<meta name=\"referrer\" content=\"no-referrer\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{h(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{h(title)}</h1><div class=\"sub\">{subtitle}</div></header>{body}</body></html>\n")


def _num(n: Any) -> str:
    try:
        return f"{int(n):,}"
    except (TypeError, ValueError):
        return h(n)


def _pct(k: int, n: int) -> str:
    return f"{100.0 * k / n:.2f}%" if n else "-"


def _reasons(row: Dict[str, Any]) -> str:
    return "<br>".join(f"{h(r['check'])}:{h(r.get('rule'), 60)}" for r in row["reasons"]) or "-"


def _badge(status: Optional[str]) -> str:
    if not status:
        return ""
    return f'<span class="badge {h(status)}">{h(status)}</span>'


class _Pager:
    """Collects overflow pages: report-2.html, report-3.html, ... (file names are ours, never corpus text)."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.pages: List[Tuple[str, str, str]] = []   # (file name, title, body)
        self.dropped = 0

    def add(self, title: str, body: str) -> Optional[str]:
        if len(self.pages) >= self.opts.max_pages:
            return None
        name = f"report-{len(self.pages) + 2}.html"
        self.pages.append((name, title, body))
        return name


def _table_section(anchor: str, title: str, rows: Sequence[Any], head: str, render_row: Callable[[Any], str],
                   pager: _Pager, opts: Options, intro: str = "") -> str:
    """First ``top_rows`` rows inline; the rest on overflow pages linked from here."""
    out = [f'<h2 id="{anchor}">{h(title)} <span class="more">({_num(len(rows))})</span></h2>', intro]
    if not rows:
        out.append('<p class="note">none</p>')
        return "".join(out)
    first = rows[: opts.top_rows]
    out.append(f"<table><thead>{head}</thead><tbody>{''.join(render_row(r) for r in first)}</tbody></table>")
    rest = rows[opts.top_rows:]
    if rest:
        links = []
        shown_rest = 0
        for start in range(0, len(rest), opts.page_rows):
            chunk = rest[start:start + opts.page_rows]
            lo, hi = opts.top_rows + start + 1, opts.top_rows + start + len(chunk)
            body = (f'<nav><a href="report.html">&larr; report</a></nav><main><h2>{h(title)}: rows {lo:,}-{hi:,} '
                    f'of {len(rows):,}</h2><table><thead>{head}</thead><tbody>'
                    f'{"".join(render_row(r) for r in chunk)}</tbody></table></main>')
            name = pager.add(f"Lazaret report: {title} {lo:,}-{hi:,}", body)
            if name is None:
                break
            shown_rest += len(chunk)
            links.append(f'<a href="{name}">{lo:,}-{hi:,}</a>')
        out.append(f'<p class="more pages">Showing {len(first):,} of {len(rows):,} here. More: {" ".join(links)}</p>')
        missing = len(rest) - shown_rest
        if missing:
            pager.dropped += missing
            out.append(f'<p class="more">{missing:,} further rows are not rendered (page cap {opts.max_pages}); '
                       f'list them with <code>lazaret review DIR list</code>.</p>')
    return "".join(out)


def _plots(scan: ScanDir) -> str:
    charts: List[str] = []
    clusters = scan.clusters()
    sizes = [c["size"] for c in clusters]
    labels = svg.log2_bins(sizes)
    series = []
    for check, name in (("near_duplicate", "near-duplicate"), ("poisoning", "poisoning")):
        counts = [0] * len(labels)
        for c in clusters:
            if c.get("check") == check:
                counts[min(svg.log2_bin_index(c["size"]), len(labels) - 1)] += 1
        series.append((name, counts))
    charts.append(svg.bar_chart("Cluster sizes", labels if sizes else [], series, log_y=True,
                                xlabel="records per cluster"))
    f = scan.findings(columns=("check", "rule", "score"))
    if f is not None and f.num_rows:
        import pyarrow.compute as pc

        checks = sorted(set(f.column("check").unique().to_pylist()) - {None})
        for check in checks:
            sub = f.filter(pc.equal(f.column("check"), check))
            scores = sub.column("score").to_numpy(zero_copy_only=False)
            labs, counts = svg.histogram_bins(scores, bins=20)
            title = ("Toxicity score histogram" if check == "toxicity"
                     else f"Score distribution: {check}")
            charts.append(svg.bar_chart(title, labs, [(check, counts)], log_y=True, xlabel="score",
                                        ylabel="findings"))
        pii = f.filter(pc.and_(pc.equal(f.column("check"), "pii"), pc.greater(f.column("score"), 0)))
        counts: Dict[str, int] = {}
        if pii.num_rows:
            # A finding's rule may list several entity types ("LOCATION,PERSON"): count each.
            for g in pii.group_by("rule").aggregate([("rule", "count")]).to_pylist():
                for ent in str(g["rule"] or "?").split(","):
                    counts[ent.strip() or "?"] = counts.get(ent.strip() or "?", 0) + g["rule_count"]
        items = list(counts.items())
        charts.append(svg.hbar_chart("PII entity counts (findings with score > 0)", items))
    else:
        counts: Dict[str, int] = {}
        for q in scan.quarantine_rows():
            for r in q["reasons"]:
                if r["check"] == "pii":
                    counts[r.get("rule") or "?"] = counts.get(r.get("rule") or "?", 0) + 1
        charts.append(svg.hbar_chart("PII entity counts (quarantined records)", list(counts.items())))
    return '<h2 id="plots">Plots</h2><div class="plots">' + "".join(charts) + "</div>"


def _summary(scan: ScanDir, state: Any, problems: List[str]) -> str:
    s = scan.summary()
    n = scan.records_in()
    actions = scan.action_counts()
    cons = s.get("conservation") or {}
    total = sum(actions.values())
    holds = bool(cons.get("holds", total == n)) and total == n
    eq = cons.get("equation") or (f"records_in {n} == clean {actions['clean']} + quarantine "
                                  f"{actions['quarantine']} + drop_duplicate {actions['drop_duplicate']} + "
                                  f"reject {actions['reject']}")
    out = ['<h2 id="summary">Run summary</h2>',
           f'<p><span class="eq {"ok" if holds else "bad"}">{h(eq)} &nbsp; '
           f'{"holds" if holds else "DOES NOT HOLD"}</span></p>',
           '<table class="small"><thead><tr><th>action</th><th class="num">records</th><th class="num">share</th>'
           '</tr></thead><tbody>',
           f'<tr><td>records in</td><td class="num">{_num(n)}</td><td class="num">100%</td></tr>']
    for a in ACTIONS:
        out.append(f'<tr><td>{a}</td><td class="num">{_num(actions[a])}</td>'
                   f'<td class="num">{_pct(actions[a], n)}</td></tr>')
    for k in ("flagged", "redacted"):
        if k in s:
            out.append(f'<tr><td>{k} (kept)</td><td class="num">{_num(s[k])}</td>'
                       f'<td class="num">{_pct(int(s[k] or 0), n)}</td></tr>')
    out.append("</tbody></table>")
    reasons = s.get("reasons")
    if not reasons:
        reasons = {}
        for q in scan.quarantine_rows():
            for r in q["reasons"]:
                k = f"{r['check']}:{r.get('rule') or ''}"
                reasons[k] = reasons.get(k, 0) + 1
    out.append('<table class="small"><thead><tr><th>reason (check:rule)</th><th class="num">records</th></tr>'
               '</thead><tbody>')
    for k, v in sorted(reasons.items(), key=lambda kv: (-int(kv[1]), kv[0]))[:200]:
        out.append(f'<tr><td class="mono">{h(k, 80)}</td><td class="num">{_num(v)}</td></tr>')
    out.append("</tbody></table>")
    prov = scan.provenance()
    pol = prov.get("policy") or {}
    meta = [("checks", ", ".join(map(str, s.get("checks") or [])))]
    for key in ("version", "tool_version", "runner", "start_time", "end_time", "started", "finished"):
        if key in prov and not isinstance(prov[key], (dict, list)):
            meta.append((key, prov[key]))
    meta.append(("policy", f"{pol.get('path', '-')} (sha256 {pol.get('sha256', '-')})"))
    out.append('<table class="small"><tbody>' + "".join(
        f'<tr><th>{h(k)}</th><td class="mono">{h(v, 300)}</td></tr>' for k, v in meta) + "</tbody></table>")
    out.append(_gate_block(scan))
    # Review status, when decisions exist.
    if state.decisions or problems:
        rel = sum(1 for d in state.doc.values() if d["action"] == "release")
        conf = sum(1 for d in state.doc.values() if d["action"] == "confirm")
        out.append(f'<h3>Review</h3><p>{len(state.decisions)} decision(s): {rel:,} record(s) released, '
                   f'{conf:,} confirmed; {len(state.open_incidents())} open incident(s). Log: '
                   + ('<span class="ok">verifies</span>' if not problems else
                      '<span class="bad">FAILS VERIFICATION</span>: ' + h("; ".join(problems[:3]), 600)) + "</p>")
        if state.incidents:
            out.append('<table><thead><tr><th>incident</th><th>status</th><th>severity</th><th>check</th>'
                       '<th>opened by</th><th>when</th><th>what</th></tr></thead><tbody>')
            for iid, inc in sorted(state.incidents.items()):
                out.append(f'<tr><td class="id">{h(iid)}</td><td>{h(inc.get("status"))}</td>'
                           f'<td>{h(inc.get("severity"))}</td><td>{h(inc.get("check"))}</td>'
                           f'<td>{h(inc.get("who"), 80)}</td><td>{h(inc.get("time"))}</td>'
                           f'<td class="ev">{h(inc.get("what"), 400)}</td></tr>')
            out.append("</tbody></table>")
    return "".join(out)


def _gate_block(scan: ScanDir) -> str:
    """The release gate's verdict as of this rendering (`lazaret gate DIR` is the authority)."""
    from lazaret.workflow.gate import GateRefused, check_policy, evaluate
    from lazaret.workflow.scandir import load_policy_sections

    try:
        crits = evaluate(scan, load_policy_sections(check_policy(scan, None)))
    except GateRefused as exc:
        return f'<h3>Release gate</h3><p><span class="bad">refused</span>: {h(exc, 500)}</p>'
    except Exception as exc:  # an invalid policy must not prevent the report  # noqa: BLE001
        return f'<h3>Release gate</h3><p><span class="bad">not evaluated</span>: {h(exc, 500)}</p>'
    failed = [c for c in crits if not c.ok]
    rows = "".join(f'<tr><td class="{"ok" if c.ok else "bad"}">{"PASS" if c.ok else "FAIL"}</td>'
                   f'<td class="mono">{h(c.name)}</td><td>{h(c.message, 400)}</td></tr>' for c in crits)
    verdict = ('<span class="ok">all hold</span>' if not failed else
               f'<span class="bad">do not hold</span> ({len(failed)} of {len(crits)} fail)')
    return (f'<h3>Release gate</h3><p>As rendered, the policy\'s release criteria {verdict}. '
            f'Decisions recorded later change this: run <code>lazaret gate DIR</code>.</p>'
            f'<table class="small"><tbody>{rows}</tbody></table>')


def _cluster_card(scan: ScanDir, c: Dict[str, Any], state: Any, opts: Options) -> str:
    from lazaret.workflow.review import cluster_reviewed

    poison = c.get("check") == "poisoning"
    trig = c.get("trigger") if poison else None
    members = scan.cluster_member_rows(c["cluster_id"])
    reviewed = cluster_reviewed(scan, state, c["cluster_id"])
    parts = [f'<div class="cluster{"" if poison else " nd"}"><h3>{"Poisoning" if poison else "Near-duplicate"} '
             f'cluster <code>{h(c["cluster_id"], 80)}</code> &middot; {c["size"]:,} records '
             f'{_badge("reviewed" if reviewed else "unreviewed")}</h3>']
    if poison and c.get("grouped") == "rule":
        parts.append('<div class="note">records matching the same poisoning rule outside any poisoning cluster, '
                     'grouped for review</div>')
    if poison and (trig or c.get("grouped") != "rule"):
        parts.append(f'<div>trigger / payload: <code>{highlight(trig, trig, 300)}</code></div>')
    if c.get("statistic"):
        parts.append(f'<div>statistic: <span class="mono">{h(c["statistic"], 200)}</span></div>')
    if c.get("representative"):
        parts.append(f'<div>kept representative: <span class="mono">{h(c["representative"], 80)}</span></div>')
    cards = []
    for m in members[: opts.members_shown]:
        cards.append(f'<div class="member"><div class="id">{h(m["doc_id"])} &middot; {h(m["action"])} '
                     f'{_badge(state.status(m["doc_id"]))}</div>'
                     f'<div class="ev">{highlight(m.get("evidence"), trig, EVIDENCE_CHARS)}</div></div>')
    if not cards:
        for ev in c.get("evidence", [])[: opts.members_shown]:
            cards.append(f'<div class="member"><div class="ev">{highlight(ev, trig, EVIDENCE_CHARS)}</div></div>')
    parts.append(f'<div class="members">{"".join(cards)}</div>')
    more = max(len(members), c["size"]) - len(cards)
    if more > 0:
        parts.append(f'<div class="more">{more:,} more member(s): <code>lazaret review DIR show '
                     f'{h(c["cluster_id"], 80)}</code></div>')
    parts.append("</div>")
    return "".join(parts)


def _cluster_section(scan: ScanDir, check: str, title: str, anchor: str, state: Any, pager: _Pager,
                     opts: Options) -> str:
    cs = [c for c in scan.clusters() if c.get("check") == check]
    out = [f'<h2 id="{anchor}">{h(title)} <span class="more">({len(cs):,})</span></h2>']
    if not cs:
        out.append('<p class="note">none</p>')
        return "".join(out)
    out.extend(_cluster_card(scan, c, state, opts) for c in cs[: opts.top_clusters])
    rest = cs[opts.top_clusters:]
    if rest:
        links, done = [], 0
        per = max(1, opts.page_rows // 20)   # cluster cards are ~20x a table row
        for start in range(0, len(rest), per):
            chunk = rest[start:start + per]
            body = (f'<nav><a href="report.html">&larr; report</a></nav><main><h2>{h(title)} '
                    f'{opts.top_clusters + start + 1:,}-{opts.top_clusters + start + len(chunk):,} of {len(cs):,}</h2>'
                    + "".join(_cluster_card(scan, c, state, opts) for c in chunk) + "</main>")
            name = pager.add(f"Lazaret report: {title}", body)
            if name is None:
                break
            done += len(chunk)
            links.append(f'<a href="{name}">{opts.top_clusters + start + 1:,}-'
                         f'{opts.top_clusters + start + len(chunk):,}</a>')
        out.append(f'<p class="more pages">Largest {opts.top_clusters} shown. More: {" ".join(links)}</p>')
        if len(rest) > done:
            pager.dropped += len(rest) - done
            out.append(f'<p class="more">{len(rest) - done:,} further clusters not rendered; '
                       f'<code>lazaret review DIR list --clusters</code>.</p>')
    return "".join(out)


def render_report(scan_dir: str, opts: Optional[Options] = None) -> List[str]:
    """Write report.html and its overflow pages into ``scan_dir``; returns the paths written."""
    from lazaret.workflow.review import load_state, verify_all

    opts = opts or Options()
    if "://" in str(scan_dir):
        # Remote outputs (gs://, s3://): the report is rendered from a local copy (`lazaret report DIR`).
        logging.getLogger("lazaret.report").warning(
            "report.html is not rendered for remote output %s; copy it locally and run `lazaret report`",
            scan_dir)
        return []
    scan = ScanDir(scan_dir)
    state = load_state(scan)
    problems = verify_all(scan)
    pager = _Pager(opts)
    rows = scan.quarantine_rows()
    status = state.status

    def by(check: str) -> List[Dict[str, Any]]:
        sel = [r for r in rows if check in row_checks(r)]
        sel.sort(key=lambda r: (-max((x.get("score") or 0.0) for x in r["reasons"] if x["check"] == check),
                                r["doc_id"]))
        return sel

    head_std = ('<tr><th>doc_id</th><th>action</th><th>reasons</th><th class="num">score</th><th>detail</th>'
                '<th>evidence (masked)</th><th>review</th></tr>')

    def row_std(check: Optional[str]) -> Callable[[Dict[str, Any]], str]:
        def render(r: Dict[str, Any]) -> str:
            rs = [x for x in r["reasons"] if check is None or x["check"] == check] or r["reasons"]
            score = max((x.get("score") or 0.0) for x in rs) if rs else 0.0
            detail = "; ".join(str(x.get("detail") or "") for x in rs)
            return (f'<tr><td class="id">{h(r["doc_id"])}</td><td>{h(r["action"])}</td><td>{_reasons(r)}</td>'
                    f'<td class="num">{score:.3f}</td><td class="ev">{h(detail, DETAIL_CHARS)}</td>'
                    f'<td class="ev">{h(r.get("evidence"), EVIDENCE_CHARS)}</td><td>{_badge(status(r["doc_id"]))}</td></tr>')
        return render

    head_rej = ('<tr><th>doc_id</th><th>source</th><th>reasons</th><th>detail</th><th>evidence</th></tr>')

    def row_rej(r: Dict[str, Any]) -> str:
        detail = "; ".join(str(x.get("detail") or "") for x in r["reasons"])
        return (f'<tr><td class="id">{h(r["doc_id"])}</td><td class="mono">{h(r.get("source_path"), 120)}:'
                f'{h(r.get("source_index"))}</td><td>{_reasons(r)}</td><td class="ev">{h(detail, DETAIL_CHARS)}</td>'
                f'<td class="ev">{h(r.get("evidence"), EVIDENCE_CHARS)}</td></tr>')

    body = [_summary(scan, state, problems), _plots(scan),
            _cluster_section(scan, "poisoning", "Poisoning clusters", "poisoning", state, pager, opts),
            _cluster_section(scan, "near_duplicate", "Near-duplicate clusters", "near-duplicates", state, pager, opts),
            _table_section("pii", "PII (masked)", by("pii"), head_std, row_std("pii"), pager, opts),
            _table_section("toxicity", "Toxicity", by("toxicity"), head_std, row_std("toxicity"), pager, opts),
            _table_section("rejects", "Rejects (malformed or unreadable)",
                           [r for r in rows if r["action"] == "reject"], head_rej, row_rej, pager, opts)]
    known = {"pii", "toxicity", "poisoning", "near_duplicate", "malformed"}
    other = [r for r in rows if r["action"] != "reject" and not (set(row_checks(r)) & known)]
    body.append(_table_section("other", "Other rules", other, head_std, row_std(None), pager, opts))
    ndup_rows = [r for r in rows if r["action"] == "drop_duplicate"]
    body.append(f'<p class="note">{len(ndup_rows):,} drop_duplicate record(s) are summarised by their clusters '
                f'above; list them with <code>lazaret review DIR list --action drop_duplicate</code>.</p>')
    nav = ('<nav><a href="#summary">Summary</a><a href="#plots">Plots</a><a href="#poisoning">Poisoning</a>'
           '<a href="#near-duplicates">Near-duplicates</a><a href="#pii">PII</a><a href="#toxicity">Toxicity</a>'
           '<a href="#rejects">Rejects</a><a href="#other">Other</a></nav>')
    foot = (f'<p class="note">Rendered by lazaret {h(__version__)}. Corpus text is escaped and shown as text; '
            f'invisible characters are shown as &lt;U+XXXX&gt;, control characters as \\xNN; links in the corpus '
            f'are not clickable. {len(pager.pages)} overflow page(s).</p>')
    opts_prov = scan.provenance().get("options")
    out_dir = opts_prov.get("out") if isinstance(opts_prov, dict) and opts_prov.get("out") else scan.path
    subtitle = h(out_dir, 300)   # the scan renders in a staging folder, then renames it to --out
    # Remove overflow pages of an earlier render so no stale page survives.
    for old in glob.glob(os.path.join(scan.path, "report-*.html")):
        if os.path.basename(old)[len("report-"):-len(".html")].isdigit():
            os.remove(old)
    written = []
    for name, title, pbody in pager.pages:
        written.append(_write(os.path.join(scan.path, name), _page(title, pbody, subtitle)))
    main_html = _page("Lazaret scan report", nav + "<main>" + "".join(body) + foot + "</main>", subtitle)
    written.insert(0, _write(os.path.join(scan.path, "report.html"), main_html))
    return written


def _write(path: str, text: str) -> str:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", errors="strict") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path


__all__ = ["render_report", "Options", "CSP"]
