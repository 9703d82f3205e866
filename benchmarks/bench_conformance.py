"""Conformance table: every method on every model of the zoo, on each backend.

The zoo is tests/zoo.py: keras.applications families (weights=None) at
small inputs, nested backbones, the Keras-2 mini-Xception .h5, a subclassed
model, a two-output model, a mixed-precision model, 1 and 3 channels and an
odd size. Each method runs on each model as tests/test_conformance.py runs
it (shape, finite, [0, 1], not constant); a cell says "ok" or names the
failure, whose message is listed under the table. Each backend runs in a
fresh process of its own, on the zoo entries that name it (the whole zoo on
TensorFlow); the mini-Xception also runs in a process that loads it first
thing (the "fresh process" row), where Keras' name counters are at zero.

Run ``python -m benchmarks.run conformance`` (or ``python -m
benchmarks.bench_conformance`` for the table alone, TensorFlow only with
``--backend tensorflow``). The section of RESULTS.md it writes is the
table; paste it into README.md's conformance section when it changes.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._timing import row

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
BACKENDS = ("tensorflow", "jax", "torch")
TIMEOUT_S = 3600
CHECKS = ("last_conv_layer",)


def _importable(backend) -> bool:
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([sys.executable, "-c", code]).returncode == 0


def _child(backend) -> dict:
    """Runs the zoo on the current backend (this process); returns the outcomes."""
    sys.path.insert(0, str(TESTS))
    import zoo

    models, seconds = {}, {}
    for entry in zoo.entries(backend, tests=False):
        start = time.perf_counter()
        built = []
        failure = zoo.outcome(lambda entry=entry, built=built: built.append(entry.build()))
        if failure != "ok":
            models[entry.name] = {m: f"building the model: {failure}" for m in zoo.METHODS + CHECKS}
            continue
        models[entry.name] = _cells(zoo, entry, built[0])
        seconds[entry.name] = time.perf_counter() - start
        print(
            f"   {backend} {entry.name}: {seconds[entry.name]:.0f} s", file=sys.stderr, flush=True
        )
    start = time.perf_counter()
    try:
        fresh = zoo.fresh_process_outcomes()
    except Exception as e:  # noqa: BLE001
        fresh = {m: f"{type(e).__name__}: {e}" for m in zoo.METHODS}
    models["mini_xception_h5, fresh process"] = fresh
    seconds["mini_xception_h5, fresh process"] = time.perf_counter() - start
    checks = {name: zoo.outcome(fn) for name, fn in zoo.extra_checks().items()}
    return dict(models=models, seconds=seconds, checks=checks)


REFUSED = "refused, as documented"
WARNED = "blank, with the documented warning"


class Refused(Exception):
    """A documented refusal (zoo.REFUSALS) happened as documented."""


class Warned(Exception):
    """A documented blank map (zoo.BLANK_WITH_WARNING) came with its warning."""


def _raise(e):
    raise e


def _cells(zoo, entry, model) -> dict:
    """{method or check: outcome} for one model."""
    x = zoo.images_for(entry.shape, zoo.N_IMAGES, value_range=entry.value_range)

    def method_check(method):
        refusal = zoo.REFUSALS.get((entry.name, method))
        if (entry.name, method) in zoo.BLANK_WITH_WARNING:
            zoo.check_method(method, entry, model, x)
            raise Warned()
        try:
            result = zoo.run_method(method, entry, model, x)
        except ValueError as e:
            if refusal is not None and re.search(refusal, str(e)):
                raise Refused() from None
            raise
        if refusal is not None:
            raise AssertionError(f"expected a refusal matching {refusal!r}, got a result")
        zoo.check_result(result, len(x), entry.shape)

    def last_conv_check():
        problem = zoo.last_conv_problem(model, entry.cam_layers)
        if problem is not None:
            raise AssertionError(problem)

    cells = {}
    for m in zoo.METHODS:
        try:
            method_check(m)
            cells[m] = "ok"
        except Refused:
            cells[m] = REFUSED
        except Warned:
            cells[m] = WARNED
        except Exception as e:  # noqa: BLE001 - every failure is a finding
            cells[m] = zoo.outcome(lambda e=e: _raise(e))
    cells["last_conv_layer"] = zoo.outcome(last_conv_check)
    return cells


def _run_backend(backend) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_conformance", "--child", backend],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            result["wall"] = time.monotonic() - start
            return result
    raise RuntimeError(f"{backend}: the zoo process failed: {proc.stderr.strip()[-3000:]}")


def run(backends=None) -> list[dict]:
    """One row per (backend, model): how many methods pass, and which fail."""
    sys.path.insert(0, str(TESTS))
    import zoo

    rows = []
    for backend in backends or BACKENDS:
        if not _importable(backend):
            rows.append(row(f"{backend}", "not run", "-", None, f"{backend} is not installed"))
            continue
        result = _run_backend(backend)
        for model, cells in result["models"].items():
            failed = [
                m for m in zoo.METHODS + CHECKS if cells.get(m, "ok") not in ("ok", REFUSED, WARNED)
            ]
            total = len([m for m in zoo.METHODS + CHECKS if m in cells])
            r = row(
                f"{backend}: {model}",
                f"{total - len(failed)}/{total} ok",
                "all ok",
                not failed,
                "fails: " + ", ".join(failed) if failed else "",
            )
            r.update(backend=backend, model=model, cells=cells)
            r["seconds"] = result["seconds"].get(model)
            rows.append(r)
        for check, outcome in result["checks"].items():
            r = row(f"{backend}: {check}", outcome if outcome == "ok" else "fails", "ok", None, "")
            r.update(backend=backend, check=check, outcome=outcome, passed=outcome == "ok")
            rows.append(r)
        rows.append(
            dict(
                row(f"{backend}: wall time", f"{result['wall']:.0f} s", "-", None, ""),
                backend=backend,
                wall=result["wall"],
            )
        )
    return rows


def _cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows) -> str:
    """The Markdown tables (one per backend) with a legend of the failures."""
    sys.path.insert(0, str(TESTS))
    import zoo

    columns = list(zoo.METHODS) + list(CHECKS)
    legend: dict[str, str] = {}

    def code(outcome):
        if outcome in ("ok", REFUSED, WARNED):
            return "ok" if outcome == "ok" else "refused"
        if outcome not in legend:
            legend[outcome] = f"F{len(legend) + 1}"
        kind = outcome.split(":", 1)[0]
        return f"{legend[outcome]} {kind}"

    lines = []
    for backend in BACKENDS:
        mine = [r for r in rows if r.get("backend") == backend]
        if not mine:
            continue
        wall = next((r["wall"] for r in mine if "wall" in r), None)
        lines += [
            f"**{backend}**" + (f" ({wall:.0f} s)" if wall else ""),
            "",
            "| model | " + " | ".join(columns) + " |",
            "|---|" + "---|" * len(columns),
        ]
        for r in mine:
            if "cells" not in r:
                continue
            cells = [code(r["cells"][c]) if c in r["cells"] else "-" for c in columns]
            lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
        checks = [r for r in mine if "check" in r]
        if checks:
            lines += ["", "| check | outcome |", "|---|---|"]
            lines += [f"| {r['check']} | {code(r['outcome'])} |" for r in checks]
        lines.append("")
    if legend:
        lines += ["Failures:", ""]
        for outcome, key in legend.items():
            short = outcome if len(outcome) <= 400 else outcome[:400] + " ..."
            lines.append(f"- **{key}** {_cell(short)}")
    return "\n".join(lines).rstrip()


def render(name, rows, command) -> str:
    """RESULTS.md section (called by benchmarks/run.py): the tables."""
    from benchmarks.run import machine

    sys.path.insert(0, str(TESTS))
    import zoo

    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = table(rows)
    print(body, flush=True)
    return "\n".join(
        [
            f"<!-- bench:{name} -->",
            f"## {name}",
            "",
            f"`{command}` on {when}; {machine()}.",
            "",
            f"Each model of tests/zoo.py times each method ({zoo.N_IMAGES} images, target: "
            "the predicted class): a cell is ok when every output has the right shape, is "
            "finite, lies in [0, 1] where it is a map, and is not constant; otherwise it names "
            "the failure listed below the tables. `refused`: a documented refusal "
            "(`zoo.REFUSALS`) with the documented error. `last_conv_layer`: the default layer "
            "of Grad-CAM and CAM has a spatial output (h*w > 1), no spatial convolution comes "
            "after it, and it is one of the layers whose output the head pools, where the "
            "entry names them. The mini-Xception also runs in a process that loads it first "
            "thing (`fresh process`).",
            "",
            body,
            f"<!-- /bench:{name} -->",
        ]
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print("RESULT " + json.dumps(_child(sys.argv[2])), flush=True)
    else:
        chosen = sys.argv[sys.argv.index("--backend") + 1 :] if "--backend" in sys.argv else None
        print(table(run(chosen)))
