"""``lazaret scan``: validate everything up front, run the Beam graph, check conservation, finalise.

Outputs are written to a staging directory next to ``--out`` and moved into place only after the pipeline
succeeded and records_in == clean + quarantine + drop_duplicate + reject held; a failed or killed run never
leaves a directory that looks complete.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from lazaret import __version__
from lazaret.checks import default_selection, names as registered_names
from lazaret.graph.outdir import SEEK_DIR
from lazaret.rules.errors import ConfigError

log = logging.getLogger("lazaret")

FORMATS = ("auto", "text", "alpaca", "prompt_completion", "messages", "sharegpt")
MANIFESTS = ("quarantine", "findings", "clusters", "clean_index", "held_index")


class ConservationError(RuntimeError):
    """Records were lost or double counted: the run must fail loudly."""


def repo_rules_dir() -> Optional[str]:
    """The default rules: ./rules when it exists, else the copy shipped in the package."""
    if os.path.isfile(os.path.join("rules", "policy.yaml")):
        return "rules"
    from importlib import resources

    packaged = resources.files("lazaret") / "defaults" / "rules"
    return str(packaged) if packaged.is_dir() else None


def add_scan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="files, directories, globs or Beam filesystem URLs (.jsonl, .jsonl.gz, .jsonl.zst, "
                             ".parquet)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--rules", metavar="DIR", default=None,
                        help="rules directory (default: ./rules, else the packaged defaults)")
    parser.add_argument("--policy", metavar="FILE", default=None, help="policy file (default: RULES/policy.yaml)")
    parser.add_argument("--checks", default=None,
                        help=f"comma-separated checks to run (default: every check the policy enables, of "
                             f"{','.join(registered_names())})")
    parser.add_argument("--format", default="auto", choices=FORMATS, help="record format (default: per file)")
    parser.add_argument("--pii-nlp", choices=("spacy", "none"), default=None,
                        help="PII NLP engine: spacy (names, locations) or none (patterns only); overrides policy")
    parser.add_argument("--id-field", default="id", help="record field holding the record's own id")
    parser.add_argument("--max-record-bytes", type=int, default=8 * 1024 * 1024,
                        help="lines longer than this are rejected without being held in memory (default 8 MiB)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    parser.add_argument("--spill-dir", metavar="DIR", default=None,
                        help="local runners: directory for the shuffle spill files that bound the runner's memory "
                             "(default: the system temp directory; the files are unlinked as they are made)")
    parser.add_argument("--no-spill", action="store_true",
                        help="local runners: keep every shuffle in memory (Beam's own behaviour)")
    parser.add_argument("--no-report", action="store_true", help="do not render report.html")
    parser.add_argument("--quiet", action="store_true", help="no progress or summary table")


def parse_checks(value: str) -> List[str]:
    """``--checks`` as registered check names (aliases and manifest names accepted), each once."""
    from lazaret.checks import get

    out = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            item = get(item).name
        except KeyError:
            raise ConfigError(f"unknown check {item!r}; choose from {', '.join(registered_names())}",
                              field="--checks") from None
        if item not in out:
            out.append(item)
    return out


def _prepare_out(out: str, overwrite: bool) -> str:
    from lazaret.graph.outdir import prepare

    return prepare(out, overwrite, ("clean", "held") + MANIFESTS)


def _finalise(staging: str, out: str) -> None:
    from lazaret.graph.outdir import finalise

    finalise(staging, out)


def _check_runner(beam_args: Sequence[str]) -> None:
    """An unknown ``--runner`` is a usage error (exit 2), found before any output folder is made."""
    from apache_beam.options.pipeline_options import StandardOptions
    from apache_beam.runners.runner import create_runner

    name = beam_options(beam_args).view_as(StandardOptions).runner
    try:
        create_runner(name)
    except (ValueError, ImportError, AttributeError) as exc:
        raise ConfigError(f"unknown Beam runner {name!r} ({str(exc)[:300]})", field="--runner") from None


def beam_options(beam_args: Sequence[str]):
    from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

    args = list(beam_args)
    options = PipelineOptions(args)
    std = options.view_as(StandardOptions)
    if not std.runner:
        # The in-process FnApiRunner is what DirectRunner ends up using; naming it skips DirectRunner's
        # attempt to download the Prism runner (no network at run time).
        std.runner = "FnApiRunner"
    options.view_as(SetupOptions).save_main_session = False
    return options


def summarise(counts_rows: List[List[Any]], files: List[Dict[str, Any]], checks: List[str]) -> Dict[str, Any]:
    actions = {a: 0 for a in ("clean", "quarantine", "drop_duplicate", "reject")}
    reasons: Dict[str, int] = {}
    other: Dict[str, int] = {"flagged": 0, "redacted": 0}
    for kind, key, n in counts_rows:
        if kind == "action":
            actions[key] = actions.get(key, 0) + n
        elif kind == "reason":
            reasons[key] = reasons.get(key, 0) + n
        else:
            other[key] = other.get(key, 0) + n
    records_in = sum(int(f["records"]) for f in files)
    total = sum(actions.values())
    equation = (f"records_in {records_in} == clean {actions['clean']} + quarantine {actions['quarantine']} + "
                f"drop_duplicate {actions['drop_duplicate']} + reject {actions['reject']}")
    return {
        "records_in": records_in,
        "actions": actions,
        "reasons": dict(sorted(reasons.items())),
        "flagged": other["flagged"],
        "redacted": other["redacted"],
        "files": len(files),
        "checks": checks,
        "conservation": {"equation": equation, "holds": records_in == total, "accounted": total},
    }


#: the counter a worker without the poisoning scan's sentence model raises (checks/poisoning/relevance.py): its
#: candidates are then confirmed by no one, so the manifests can differ from a run with the model on every worker
SECOND_LOOK_SKIPPED = "poisoning.relevance_model_missing_on_worker"


def _print_summary(summary: Dict[str, Any], out: str, metrics: Dict[str, int], stream=sys.stderr) -> None:
    w = stream.write
    w("\nLazaret scan summary\n")
    w(f"  records in      {summary['records_in']:>10}\n")
    for action, n in summary["actions"].items():
        w(f"  {action:<15} {n:>10}\n")
    w(f"  flagged (kept)  {summary['flagged']:>10}\n  redacted (kept) {summary['redacted']:>10}\n")
    if summary["reasons"]:
        w("  reasons:\n")
        for key, n in summary["reasons"].items():
            w(f"    {key:<40} {n:>8}\n")
    if metrics:
        w("  stage counters (Beam metrics):\n")
        for key, n in sorted(metrics.items()):
            w(f"    {key:<40} {n:>8}\n")
    skipped = metrics.get(SECOND_LOOK_SKIPPED, 0)
    if skipped:
        w(f"  WARNING: the poisoning scan's relevance second look was skipped {skipped} time(s): a worker lacked "
          "its sentence model, so this run's manifests may differ from a run where every worker has it; give "
          "the workers pipelines/requirements-worker.txt\n")
    w(f"  conservation: {summary['conservation']['equation']} "
      f"[{'OK' if summary['conservation']['holds'] else 'MISMATCH'}]\n")
    w(f"\nOutputs in {out}/: clean/ quarantine/ findings/ provenance.json summary.json report.html\n")


def _metrics(result) -> Dict[str, int]:
    out: Dict[str, int] = {}
    try:
        from apache_beam.metrics.metric import MetricsFilter

        for counter in result.metrics().query(MetricsFilter())["counters"]:
            key = f"{counter.key.metric.namespace}.{counter.key.metric.name}"
            value = counter.committed if counter.committed is not None else counter.attempted
            out[key] = out.get(key, 0) + int(value or 0)
    except Exception:  # noqa: BLE001 - not every runner reports metrics; counts come from the outputs
        pass
    return out


@dataclasses.dataclass
class ScanSetup:
    """Everything the launcher resolved before any data is read: what the later steps and provenance use."""

    checks: List[str]
    rules_dir: Optional[str]
    policy_path: Optional[str]
    policy: Any
    sections: Dict[str, Any]
    custom: List[Dict[str, Any]]
    recognizer_files: List[str]
    check_rules: Dict[str, Any]
    check_rule_files: List[Any]
    inputs: List[Any]
    started: dt.datetime
    t0: float


def run_scan(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """``lazaret scan``, in named steps: configuration, staging, allocator tuning, the run under the runner
    patches (or a dry run), the summary with its conservation check, provenance, the report, finalisation.
    Any failure after staging removes the staging folder, so no half-written output looks complete."""
    started, t0 = dt.datetime.now(dt.timezone.utc), time.time()
    setup = configure(args, started, t0)
    _check_runner(beam_args)
    staging = _prepare_out(args.out, args.overwrite)
    options = beam_options(beam_args)
    runner = _runner_name(options)
    if not args.quiet:
        log.info("scanning %d file(s) with checks %s on %s; staging in %s", len(setup.inputs),
                 ",".join(setup.checks), runner, staging)
    tune_allocator_for(runner)
    java_stack_for(runner)
    from lazaret.graph.outdir import discard

    from lazaret.runners.introspection import cached

    from lazaret.runners.worker_exit import CLEANUPS

    def undo() -> None:
        discard(staging)

    CLEANUPS.append(undo)  # a worker that dies mid-run may end the process from its thread (runners.worker_exit)
    try:
        with cached():  # Beam's per-object introspection, once per object (lazaret.runners.introspection)
            pipeline = build_pipeline(options, _plan(args, setup, staging))
            with runner_patches(args, runner) as spilling:
                result = pipeline.run()
                if _is_dry_run(options):
                    return _dry_run_done(result, staging, args)
                _wait(result)
        metrics = _metrics(result)
        summary, files = write_summary(staging, setup.checks)
        write_provenance(staging, build_provenance(args, setup, options, runner, summary, files, metrics,
                                                   bool(spilling)))
        if not args.no_report:
            render(staging)
        _finalise(staging, args.out)
    except BaseException:
        discard(staging)
        raise
    finally:
        CLEANUPS.remove(undo)
    if not args.quiet:
        _print_summary(summary, args.out, metrics)
    return 0


def configure(args: argparse.Namespace, started: dt.datetime, t0: float) -> ScanSetup:
    """Configuration: read and validate the checks, rules, policy, recognizers and inputs.

    Why first and all of it: every mistake a user can make in a file or an option is reported (as a
    ConfigError naming the file, line or option) before an output folder exists or any record is read."""
    from lazaret.io.readers import InputError, expand_inputs
    from lazaret.rules.policy import load_policy
    from lazaret.rules.recognizers import load_recognizer_files

    explicit_checks = parse_checks(args.checks) if args.checks is not None else None
    rules_dir = args.rules if args.rules is not None else repo_rules_dir()
    if args.rules is not None and not os.path.isdir(args.rules):
        raise ConfigError("rules directory does not exist", path=args.rules, field="--rules")
    policy_path = args.policy
    if policy_path is None and rules_dir and os.path.isfile(os.path.join(rules_dir, "policy.yaml")):
        policy_path = os.path.join(rules_dir, "policy.yaml")
    if policy_path is not None and not os.path.isfile(policy_path):
        raise ConfigError("policy file does not exist", path=policy_path, field="--policy")
    policy = load_policy(policy_path)
    sections = policy.sections
    checks = explicit_checks if explicit_checks is not None else default_selection(sections)
    if args.pii_nlp:
        sections["pii"] = dict(sections["pii"], nlp=args.pii_nlp)
    custom, recognizer_files = load_recognizer_files(rules_dir, sections["pii"]["recognizer_files"])
    check_rules: Dict[str, Any] = {}
    check_rule_files: List[Any] = []
    for check in selected(checks):
        if check.load_rules:
            check_rules[check.name], files = check.load_rules(check.section(sections), rules_dir)
            check_rule_files += files
    try:
        inputs = expand_inputs(args.inputs)
    except InputError as exc:
        raise ConfigError(str(exc), field="INPUT") from None
    if args.max_record_bytes < 1024:
        raise ConfigError("must be at least 1024", field="--max-record-bytes")
    from lazaret.graph.outdir import check_out_against_inputs

    check_out_against_inputs(args.out, args.inputs, inputs)
    return ScanSetup(checks=checks, rules_dir=rules_dir, policy_path=policy_path, policy=policy, sections=sections,
                     custom=custom, recognizer_files=recognizer_files, check_rules=check_rules,
                     check_rule_files=check_rule_files, inputs=inputs, started=started, t0=t0)


def _plan(args: argparse.Namespace, setup: ScanSetup, staging: str) -> Any:
    from lazaret.graph.pipeline import ScanPlan

    return ScanPlan(inputs=setup.inputs, staging=staging, checks=setup.checks, sections=setup.sections,
                    custom_recognizers=setup.custom, check_rules=setup.check_rules, fmt=args.format,
                    id_field=args.id_field, max_record_bytes=args.max_record_bytes)


def _runner_name(options: Any) -> Any:
    from apache_beam.options.pipeline_options import StandardOptions

    return options.view_as(StandardOptions).runner


def tune_allocator_for(runner: Any) -> None:
    """Allocator tuning, for the in-process runners only.

    Why only there: the glibc thresholds and arena cap (lazaret.runners.memory) were measured on the local
    runners; other engines (and their SDK workers, which may run in this process) keep Beam's and glibc's
    own settings."""
    from lazaret.runners import spill

    if spill.runs_in_process(runner):
        from lazaret.runners.memory import tune_allocator

        tune_allocator()


JOB_SERVER_STACK = "-Xss16m"


def java_stack_for(runner: Any) -> None:
    """A larger default thread stack for the JVMs a portable run starts (the Flink and Spark job servers
    inherit the environment), unless ``JAVA_TOOL_OPTIONS`` already sets one.

    Why: the job server translates and fuses the pipeline by recursing over its graph, and the scan's graph is
    deep; once, under load, the Flink 1.19 job server failed sample_data with java.lang.StackOverflowError on
    the JVM's default stack (the same run passed before and after: interpreted frames, before the JIT compiles
    the recursion, are larger). 16 MB is reserved address space, paid only where a thread recurses."""
    from lazaret.runners import spill

    if spill.runs_in_process(runner):
        return
    opts = os.environ.get("JAVA_TOOL_OPTIONS", "")
    if "-Xss" not in opts:
        os.environ["JAVA_TOOL_OPTIONS"] = f"{opts} {JOB_SERVER_STACK}".strip()


def runner_patches(args: argparse.Namespace, runner: Any) -> Any:
    """Runner patches: a context manager that installs the spilling shuffles for the local runners while the
    pipeline runs (yields whether it spills).

    Why a context: the patches replace Beam symbols process-wide; they must be removed when the run ends,
    whether it succeeded or not. ``--no-spill`` keeps Beam's own in-memory behaviour."""
    from lazaret.runners import spill

    return contextlib.nullcontext(False) if args.no_spill else spill.for_runner(runner, args.spill_dir)


def build_pipeline(options: Any, plan: Any) -> Any:
    """The Beam graph for the plan (lazaret.graph.pipeline), built before the runner patches are installed so
    that they are in place only while the pipeline runs."""
    import apache_beam as beam

    from lazaret.graph.pipeline import build

    pipeline = beam.Pipeline(options=options)
    build(pipeline, plan)
    return pipeline


def _is_dry_run(options: Any) -> bool:
    from apache_beam.options.pipeline_options import TestOptions

    return bool(options.view_as(TestOptions).dry_run)


def _wait(result: Any) -> None:
    """Why check the state: some runners return from ``wait_until_finish`` on failure without raising."""
    state = result.wait_until_finish()
    if str(state).split(".")[-1] not in ("DONE", "None") and state is not None:
        raise RuntimeError(f"pipeline finished in state {state}")


def write_summary(staging: str, checks: List[str]) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """Report (counts): turn the pipeline's count rows into summary.json and check conservation.

    Why here and not in the graph: conservation compares what was read with where every record went, over
    the whole run; a mismatch must fail the run before anything is moved into ``--out``."""
    from lazaret.io.writers import ensure_empty_parquet

    with open(os.path.join(staging, "_counts.json"), encoding="utf-8") as fh:
        counts_rows = json.load(fh)
    with open(os.path.join(staging, "_files.json"), encoding="utf-8") as fh:
        files = json.load(fh)
    os.remove(os.path.join(staging, "_counts.json"))
    os.remove(os.path.join(staging, "_files.json"))
    shutil.rmtree(os.path.join(staging, SEEK_DIR), ignore_errors=True)  # gzip seek indexes (io.readers)
    for kind in MANIFESTS:
        ensure_empty_parquet(staging, kind)
    summary = summarise(counts_rows, files, checks)
    if not summary["conservation"]["holds"]:
        raise ConservationError("conservation check failed: " + summary["conservation"]["equation"])
    with open(os.path.join(staging, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return summary, files


def build_provenance(args: argparse.Namespace, setup: ScanSetup, options: Any, runner: Any,
                     summary: Dict[str, Any], files: List[Dict[str, Any]], metrics: Dict[str, int],
                     spilling: bool) -> Dict[str, Any]:
    """Provenance: what an auditor needs to repeat the run (inputs with their hashes, rules, policy, models,
    versions, options, counts).

    Why built after the run: it records the counts and metrics of this run, and the input hashes the
    readers computed while reading (no second pass over the data)."""
    from lazaret.graph.provenance import environment, file_entry, rule_files

    sections = setup.sections
    models = [entry for check in selected(setup.checks) if check.models
              for entry in check.models(check.section(sections))]
    rules_entries = [file_entry(p, "recognizers") for p in setup.recognizer_files]
    rules_entries += [file_entry(p, kind) for p, kind in setup.check_rule_files]
    policy_path = setup.policy_path
    provenance = {
        "tool": {"name": "lazaret", "version": __version__},
        "started_at": setup.started.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.time() - setup.t0, 2),
        "command": [os.path.basename(sys.argv[0])] + sys.argv[1:],
        "options": {"inputs": args.inputs, "out": args.out, "rules": setup.rules_dir, "policy": policy_path,
                    "checks": setup.checks, "format": args.format, "pii_nlp": sections["pii"]["nlp"],
                    "id_field": args.id_field, "max_record_bytes": args.max_record_bytes,
                    "spill": spilling},
        "runner": runner,
        "cwd": os.getcwd(),
        "beam_options": options.get_all_options(drop_default=True, retain_unknown_options=True),
        "inputs": sorted(files, key=lambda f: f["path"]),
        "rules": rules_entries,
        "rule_files_present": rule_files(setup.rules_dir),
        "policy": {"path": policy_path, "abs_path": os.path.abspath(policy_path) if policy_path else None,
                   "sha256": setup.policy.sha256,
                   "embedded_defaults": policy_path is None, "sections": sections},
        "pii": {"nlp": sections["pii"]["nlp"],
                "note": ("spaCy en_core_web_sm (tok2vec+ner) finds PERSON and LOCATION"
                         if sections["pii"]["nlp"] == "spacy" else
                         "pattern recognizers only: PERSON and LOCATION are NOT detected"),
                "custom_recognizers": [r["name"] for r in setup.custom]},
        "models": models,
        "environment": environment(),
        "counts": summary,
        "conservation": summary["conservation"],
        "metrics": metrics,
    }
    _add_check_provenance(provenance, setup.checks, sections, setup.inputs)
    return provenance


def write_provenance(staging: str, provenance: Dict[str, Any]) -> None:
    """Write provenance.json with the review log's anchor, and seal the folder when a signing key is set.

    Why the anchor goes in here: provenance.json names the empty review log it was written with, so a
    review/ folder deleted later fails verification instead of looking like a scan nobody reviewed."""
    from lazaret.workflow.review import init_log
    from lazaret.workflow.signing import signing_key, write_seal

    provenance["review_log"] = init_log(staging)
    with open(os.path.join(staging, "provenance.json"), "w", encoding="utf-8") as fh:
        json.dump(provenance, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    if signing_key():
        write_seal(staging, signing_key())


def render(staging: str) -> None:
    """Report: render report.html from the manifests just written.

    Why optional: the report is for people; a scan whose renderer cannot be imported still has every
    manifest (``lazaret report DIR`` renders it later)."""
    try:
        from lazaret.workflow.report import render_report
    except ImportError:
        return
    render_report(staging)


def _dry_run_done(result: Any, staging: str, args: argparse.Namespace) -> int:
    """``--dry_run=True`` (DataflowRunner): the job was translated, not run. Record the job graph."""
    job = getattr(result, "job", None)
    proto = getattr(job, "proto_pipeline", None)
    names = sorted(t.unique_name for t in proto.components.transforms.values()) if proto is not None else []
    for kind in ("clean", "held", SEEK_DIR) + MANIFESTS:
        shutil.rmtree(os.path.join(staging, kind), ignore_errors=True)
    with open(os.path.join(staging, "job_graph.json"), "w", encoding="utf-8") as fh:
        json.dump({"dry_run": True, "transforms": names}, fh, indent=1)
    _finalise(staging, args.out)
    print(f"dry run: job graph with {len(names)} transforms translated; written to {args.out}/job_graph.json",
          file=sys.stderr)
    return 0


def selected(names: List[str]) -> List[Any]:
    """The registered checks called ``names``, in registry order."""
    from lazaret.checks import checks

    return [c for c in checks() if c.name in names]


def _add_check_provenance(provenance: Dict[str, Any], checks: List[str], sections: Dict[str, Any],
                          inputs: Optional[Sequence[str]] = None) -> None:
    """Checks that have more to record (hash schemes, the parameters they ran with) say so in provenance."""
    provenance["checks"] = {c.name: c.provenance(c.section(sections), inputs)
                            for c in selected(checks) if c.provenance}
