"""``python -m bench``: list the benches, or run one (or ``all``) by name.

    python -m bench --list                  # one JSON line per bench
    python -m bench latency --quick         # run one; its options: python -m bench latency -h
    python -m bench all --quick             # every bench of the suite, one after another

The suite's benches are modules of this package with ``main(argv) -> int``. Any other
script in ``bench/`` (``sqlite_transport``, ``wire_size``, ...) is listed too and run as
``python -m bench.<name> [its own options]`` in a subprocess, exactly as its author runs it.
"""

from __future__ import annotations

import ast
import importlib
import json
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: The suite, in the order ``all`` runs them (redis_commands last: it reads server-wide stats).
SUITE = ("latency", "throughput", "chain", "chord", "bytes", "embedded", "redis_commands")
#: Bench name -> module, where they differ (``bytes`` would shadow a builtin's name).
MODULES = {"bytes": "wire_bytes"}
#: Modules of this package that are not benches.
SUPPORT = {"__init__", "__main__", "harness", "app", "celery_app", "ledger", "systems", "workloads"}


def module_name(bench: str) -> str:
    return MODULES.get(bench, bench)


def others() -> list[str]:
    """Scripts in ``bench/`` that are not part of the suite, by module name."""
    suite_modules = {module_name(name) for name in SUITE}
    return sorted(path.stem for path in HERE.glob("*.py")
                  if path.stem not in SUPPORT and path.stem not in suite_modules
                  and not path.stem.startswith("_"))


def summary(module: str) -> str:
    """The first line of a module's docstring, read without importing it."""
    try:
        doc = ast.get_docstring(ast.parse((HERE / f"{module}.py").read_text()))
    except (OSError, SyntaxError) as exc:
        return f"(cannot read: {exc})"
    return (doc or "").strip().splitlines()[0] if doc else ""


def listing() -> int:
    for name in SUITE:
        module = module_name(name)
        print(json.dumps({"bench": name, "kind": "suite", "module": f"bench.{module}",
                          "summary": summary(module)}))
    for name in others():
        print(json.dumps({"bench": name, "kind": "script", "module": f"bench.{name}",
                          "summary": summary(name)}))
    return 0


def run(name: str, argv: list[str]) -> int:
    if name in SUITE:
        module = importlib.import_module(f"bench.{module_name(name)}")
        return int(module.main(argv) or 0)
    if name in others():
        return subprocess.call([sys.executable, "-m", f"bench.{name}", *argv],
                               cwd=HERE.parent)
    known = ", ".join([*SUITE, *others()])
    print(f"python -m bench: unknown bench {name!r}; known: {known} (or all)", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    # SIGTERM unwinds like Ctrl-C, so a bench stopped from outside still stops its
    # workers and deletes its keys and files on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if not argv or argv[0] in ("--list", "list"):
        if not argv:
            print(__doc__, file=sys.stderr)
        return listing()
    if argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    name, rest = argv[0], argv[1:]
    if name == "all":
        worst = 0
        for bench in SUITE:
            print(f"[bench] === {bench} ===", file=sys.stderr, flush=True)
            try:
                worst = max(worst, run(bench, rest))
            except Exception as exc:  # noqa: BLE001 - report it and go on with the next
                print(f"[bench] {bench} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                worst = 1
        return worst
    return run(name, rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
