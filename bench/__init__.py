"""flowq's benchmark suite: ``python -m bench --list``, ``python -m bench <name> [options]``.

Performance is measured here, never asserted in tests. Every bench prints one JSON line
per case on stdout and short progress lines on stderr; it starts and stops its own
``flowq worker`` subprocesses (by process group, never by name), uses a private Redis
database, key prefix and queue, and deletes what it wrote when it ends.

Modules:

* :mod:`bench.harness`: workers, private resources, JSON output, percentiles.
* :mod:`bench.app`: the tasks every bench runs (and the bytes counter of ``bytes``).
* one module per bench (``latency``, ``throughput``, ``chain``, ...), each with
  ``main(argv) -> int``. Other scripts in this folder (``sqlite_transport``, ...) are
  listed and run by name too, as ``python -m bench.<name>``.

See ``docs/performance.md`` for what each bench measures and the figures.
"""
