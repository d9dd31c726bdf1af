"""The ``lazaret`` command line. Exit status: 0 done (findings are not errors), 2 bad usage or
configuration, 1 the pipeline failed."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
from typing import Iterator, List, Optional

from lazaret import __version__
from lazaret.rules.errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Subcommands implemented as ``main(argv) -> int`` in their own modules.
DELEGATED = {
    "report": ("lazaret.workflow.report.cli", "(re)render DIR/report.html from the manifests"),
    "review": ("lazaret.workflow.review", "list / show / release / confirm quarantined records"),
    "release": ("lazaret.workflow.release", "write the fine-tuning set: clean/ plus reviewer-released records"),
    "gate": ("lazaret.workflow.gate", "exit 0 only when the policy's release criteria hold"),
    "train-toxicity": ("lazaret.training.toxicity", "train or evaluate a fastText toxicity model"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 already; keep its message format
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    from lazaret.scan import add_scan_arguments

    parser = _Parser(prog="lazaret", description="Quarantine station for fine-tuning corpora.")
    parser.add_argument("--version", action="version", version=f"lazaret {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    scan = sub.add_parser("scan", help="scan a corpus (any further --options are Beam pipeline options)")
    add_scan_arguments(scan)
    rules = sub.add_parser("rules", help="rule and policy files")
    rules_sub = rules.add_subparsers(dest="rules_command", metavar="ACTION", parser_class=_Parser)
    check = rules_sub.add_parser("check", help="validate rule and policy files with file:line errors")
    check.add_argument("dir", nargs="?", default="rules")
    check.add_argument("--policy", default=None)
    for name, (_module, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _logging(quiet: bool) -> None:
    # Only Lazaret's own progress at INFO; libraries (Beam, Presidio) speak up at WARNING and above.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda record: not str(record.msg).startswith("apitools not found"))
    logging.getLogger("lazaret").setLevel(logging.WARNING if quiet else logging.INFO)
    for noisy in ("presidio-analyzer", "presidio_analyzer", "tldextract", "absl"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


_TERMINATED: List[int] = []  # the exit status SIGTERM asked for, once it arrived


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """SIGTERM ends a scan like Ctrl-C: the exception unwinds through run_scan, which removes its staging
    folder (Python's default for SIGTERM is to die on the spot and leave it). SIGKILL cannot be caught;
    the folder's lock is then released by the kernel and the next run into the same --out removes it.
    The previous handler is restored when the scan returns: a program (or test suite) that calls
    ``main`` in-process must not keep a handler that raises SystemExit after the scan is over."""
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        def _raise(signum, _frame):
            from lazaret.runners.worker_exit import WORKER_EXITS

            if WORKER_EXITS:  # sent by the scan's own runner thread: a failed scan, not a terminated one
                print(f"lazaret scan: FAILED: {WORKER_EXITS[0]}; the staging folder is removed", file=sys.stderr)
                _TERMINATED.append(EXIT_FAILED)
                raise SystemExit(EXIT_FAILED)
            _TERMINATED.append(128 + signum)
            raise SystemExit(128 + signum)

        try:
            previous = signal.signal(signal.SIGTERM, _raise)
        except (ValueError, OSError):  # not allowed here (embedded interpreter): keep the default
            previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        module = importlib.import_module(DELEGATED[argv[0]][0])
        _logging(False)
        try:
            return int(module.main(argv[1:]) or 0)
        except ConfigError as exc:
            print(f"lazaret {argv[0]}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    parser = _parser()
    if argv and argv[0] == "scan":
        args, beam_args = parser.parse_known_args(argv)
        bad = [a for a in beam_args if not a.startswith("--")]
        if bad:
            parser.error(f"unexpected argument(s): {' '.join(bad)}")
    else:
        args = parser.parse_args(argv)
        beam_args = []
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "scan":
            from lazaret.scan import run_scan

            _logging(args.quiet)
            with _terminate_cleanly():
                try:
                    return run_scan(args, beam_args)
                except ConfigError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the pipeline failed: exit 1 with the reason
                    if _TERMINATED:  # Beam may wrap the SystemExit raised in a worker thread's callback: 143
                        if _TERMINATED[0] != EXIT_FAILED:  # (a dead worker's reason is printed already)
                            print("lazaret scan: terminated (SIGTERM); staging folder removed", file=sys.stderr)
                        return _TERMINATED[0]
                    logging.getLogger("lazaret").error("scan failed: %s: %s", exc.__class__.__name__, exc)
                    print(f"lazaret scan: FAILED: {exc.__class__.__name__}: {exc}", file=sys.stderr)
                    return EXIT_FAILED
        if args.command == "rules":
            from lazaret.rules.check import check_rules

            _logging(True)
            return check_rules(args.dir, args.policy)
    except ConfigError as exc:
        print(f"lazaret {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def entry() -> None:
    """The process entry point (the ``lazaret`` command, ``python -m lazaret``, ``python -m lazaret.cli``).

    Why not ``sys.exit(main())``: after a SIGTERM has unwound the scan and its staging folder is removed, the
    runner's threads may still be inside native code (gRPC, Arrow, zstd); interpreter finalization then
    destroys them and the process aborts ("terminate called without an active exception", exit -6 instead of
    143, about one run in two here). A terminated process leaves without finalization instead; its outputs
    are already gone and its streams are flushed here. ``main`` itself never exits, so in-process callers
    (tests, notebooks) are unaffected."""
    import os

    try:
        code = main()
    except SystemExit:
        if not _TERMINATED:
            raise
        code = _TERMINATED[0]
    if _TERMINATED:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
