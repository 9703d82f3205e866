"""Runs the benchmarks and records them in benchmarks/RESULTS.md.

Usage (from the repository root)::

    python -m benchmarks.run            # every benchmarks/bench_*.py
    python -m benchmarks.run synthetic  # only bench_synthetic.py

Each ``bench_<name>.py`` has ``run() -> list[dict]`` (see `_timing.row`),
and may have ``render(name, rows, command) -> str`` for a section of its
own shape.
RESULTS.md keeps one section per benchmark module; a run replaces the
sections it ran and keeps the others, each with the command, date and
machine it was measured with.
"""

from __future__ import annotations

import datetime
import importlib
import os
import platform
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
HEADER = """# Benchmark results

Recorded by `python -m benchmarks.run [NAME ...]` (see benchmarks/run.py).
Speed targets are ratios measured against a baseline in the same run, so
they hold on other machines; each section names the machine it ran on.
"""


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    cpu = cpu_name()
    import keras
    import numpy

    versions = f"numpy {numpy.__version__}, keras {keras.__version__} ({keras.backend.backend()})"
    try:
        import tensorflow as tf

        versions += f", tensorflow {tf.__version__}"
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; {versions}"


def render(name: str, rows: list[dict], command: str) -> str:
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        f"<!-- bench:{name} -->",
        f"## {name}",
        "",
        f"`{command}` on {when}; {machine()}.",
        "",
        "| case | measured | target | passed | notes |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ok = {True: "yes", False: "**NO**", None: "-"}[r["passed"]]
        lines.append(f"| {r['case']} | {r['measured']} | {r['target']} | {ok} | {r['notes']} |")
    lines.append(f"<!-- /bench:{name} -->")
    return "\n".join(lines)


def merge(text: str, name: str, section: str) -> str:
    pattern = re.compile(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->", re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: section, text)
    return text.rstrip() + "\n\n" + section + "\n"


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    failed = []
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"== {name}", flush=True)
        result = module.run()
        rows = result if isinstance(result, list) else [result]
        for r in rows:
            print(
                f"   {r['case']}: {r['measured']} (target {r['target']}) "
                f"{'ok' if r['passed'] in (True, None) else 'FAILED'}",
                flush=True,
            )
        failed += [r["case"] for r in rows if r["passed"] is False]
        command = "python -m benchmarks.run" + (f" {name}" if argv else "")
        # A module may render its own section (bench_conformance: a models x
        # methods table); the others get the case table.
        section = getattr(module, "render", render)
        text = merge(text, name, section(name, rows, command))
        RESULTS.write_text(text)
    if failed:
        print("targets missed: " + "; ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
