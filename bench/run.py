"""``python -m bench.run {fanout,overhead,drain,window,memory,plan-scale,state-save,all}``:
the performance benchmarks, each printing its table and writing ``bench/results/NAME.json``.

Owns the command line, the scratch directory (removed at the end), the order of ``all``
(window reads overhead's runs, memory reads fan-out's plan runs, so nothing is measured
twice) and ``bench/results/performance-tables.md`` (every table of the last ``all``). Runs under the
project's ``.venv`` (re-executes itself there when started by another Python); the peers
live in ``bench/.venv-peers``, created on first use.

Must not: install into the project's virtualenv, leave a lab running, or judge numbers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parent.parent


def _ensure_project_python() -> None:
    """Re-exec under the repository's .venv when upgrader is not importable here."""
    try:
        import upgrader  # noqa: F401
    except ImportError:
        venv_python = _REPO / ".venv" / "bin" / "python"
        if venv_python.exists() and Path(sys.executable) != venv_python:
            os.execv(str(venv_python), [str(venv_python), "-m", "bench.run", *sys.argv[1:]])
        raise SystemExit("bench: cannot import upgrader; run `make venv` first") from None


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    if str(_REPO) not in sys.path:
        sys.path.insert(0, str(_REPO))
    _ensure_project_python()
    from bench import drain, fanout, memory, overhead, plan_scale, state_save, window
    from bench._perf import RESULTS, write_result

    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument(
        "what",
        choices=(
            "fanout",
            "overhead",
            "drain",
            "window",
            "memory",
            "plan-scale",
            "state-save",
            "all",
        ),
    )
    p.add_argument("--work", type=Path, help="scratch directory (default: a new temporary one)")
    p.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    p.add_argument("--no-peers", action="store_true", help="fan-out without ansible/pyinfra")
    p.add_argument(
        "--sizes", default="1,10,50,200", help="fan-out lab sizes (comma-separated node counts)"
    )
    p.add_argument("--reps", type=int, help="repetitions everywhere (default: per benchmark)")
    args = p.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="upgrader-bench-"))
    own_work = args.work is None
    sizes = tuple(int(x) for x in args.sizes.split(",") if x.strip())
    reps = args.reps
    docs: dict[str, dict[str, Any]] = {}
    renders: list[tuple[str, str]] = []
    started = time.monotonic()

    def done(name: str, doc: dict[str, Any], text: str, t0: float) -> None:
        doc["elapsed_s"] = round(time.monotonic() - t0, 1)
        path = write_result(name, doc, args.results)
        docs[name] = doc
        renders.append((name, text))
        print(f"\n## {name} ({doc['elapsed_s']:.0f}s) -> {path}\n{text}\n", flush=True)

    try:
        todo = (
            ("fanout", "overhead", "drain", "window", "memory", "plan-scale", "state-save")
            if args.what == "all"
            else (args.what,)
        )
        delayed_runs = None
        for name in todo:
            t0 = time.monotonic()
            if name == "fanout":
                doc = fanout.run(
                    work,
                    sizes=sizes,
                    reps=(lambda n: reps) if reps else fanout.default_reps,
                    peers=not args.no_peers,
                    log=_log,
                )
                done(name, doc, fanout.render(doc), t0)
            elif name == "overhead":
                doc, delayed_runs = overhead.run(work, reps=reps or 3, log=_log)
                done(name, doc, overhead.render(doc), t0)
            elif name == "drain":
                doc = drain.run(work, reps=reps or 3, log=_log)
                done(name, doc, drain.render(doc), t0)
            elif name == "window":
                doc = window.run(work, runs=delayed_runs, reps=reps or 3, log=_log)
                done(name, doc, window.render(doc), t0)
            elif name == "memory":
                doc = memory.run(work, fanout=docs.get("fanout"), log=_log)
                done(name, doc, memory.render(doc), t0)
            elif name == "plan-scale":
                doc = plan_scale.run(work, sizes=plan_scale.SIZES, reps=reps or 3, log=_log)
                done(name, doc, plan_scale.render(doc), t0)
            elif name == "state-save":
                doc = state_save.run(work, reps=reps or 5, log=_log)
                done(name, doc, state_save.render(doc), t0)
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    total = time.monotonic() - started
    if args.what == "all":
        body = "\n\n".join(f"### {n}\n\n{t}" for n, t in renders)
        (args.results / "performance-tables.md").write_text(
            f"<!-- python -m bench.run all: {total:.0f}s -->\n\n{body}\n"
        )
    print(f"bench {args.what}: {total:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
