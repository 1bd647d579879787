"""How far one clip travels through the package on its way from a WAV file to the int8 C array.

Runs :func:`keras_dssdn.deploy.export.export_bundle` once (a run folder or ``.keras`` model, a DCASE folder) and
prints what it measured:

* with ``--trace`` (the default): every call into a ``keras_dssdn`` function, recorded with ``sys.setprofile`` on
  the main thread: the package modules the export runs code of, the distinct cross-module call edges
  (module A calls a function of module B), and the **back-calls**: edges A -> B taken while B is already on the
  call stack below A (B called A, directly or through others, and A calls back into B: the round trips a reader
  follows between files). Entering a generator's body is not a call (an iterator handed down is data, not
  a call back). Tracing slows the export; its time is not the export's time.
* with ``--no-trace``: the export's wall time alone (``--repeat N`` times, each into a new folder).

Compare two versions of the package by running the same command with ``PYTHONPATH`` at each checkout::

    PYTHONPATH=/path/to/old/checkout python tools/trace_export_path.py --model RUN --data DATA --out /tmp/t1
    python tools/trace_export_path.py --model RUN --data DATA --out /tmp/t2

``--json FILE`` writes the figures (modules, edges and back-calls named). Bundles are written under ``--out``
(must not exist; removed only with ``--discard``, which deletes nothing else).
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import sys
import time
from pathlib import Path

PACKAGE = "keras_dssdn"
_GENERATOR_FLAGS = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


def generator_frame(frame) -> bool:
    """A generator's (or coroutine's) body runs when its consumer asks for the next item, never when it is
    called: entering it is data flowing through an iterator the consumer was handed, not a call."""
    return bool(frame.f_code.co_flags & _GENERATOR_FLAGS)


class CallTracer:
    """``sys.setprofile`` hook: the package modules called, cross-module edges and back-calls (see module doc)."""

    def __init__(self):
        self.stack = []  # (frame id, module) of the package's frames now running, outermost first
        self.modules = {}  # module -> calls into it
        self.edges = {}  # (caller module, callee module) -> calls
        self.back = {}  # (caller module, callee module) -> calls while the callee was already on the stack

    def __call__(self, frame, event, arg):
        if event == "call":
            module = frame.f_globals.get("__name__", "")
            if module.startswith(PACKAGE):
                self._enter(frame, module)
        elif event == "return" and self.stack and self.stack[-1][0] == id(frame):
            self.stack.pop()

    def _enter(self, frame, module: str) -> None:
        self.modules[module] = self.modules.get(module, 0) + 1
        if self.stack and self.stack[-1][1] != module and not generator_frame(frame):
            edge = (self.stack[-1][1], module)
            self.edges[edge] = self.edges.get(edge, 0) + 1
            if any(m == module for _, m in self.stack[:-1]):
                self.back[edge] = self.back.get(edge, 0) + 1
        self.stack.append((id(frame), module))

    def figures(self) -> dict:
        named = lambda d: {f"{a} -> {b}": n for (a, b), n in sorted(d.items())}  # noqa: E731
        return {"modules": len(self.modules), "cross_module_edges": len(self.edges), "back_call_edges": len(self.back),
                "back_calls": sum(self.back.values()), "module_names": sorted(self.modules),
                "back_call_names": named(self.back), "edge_names": named(self.edges)}


def export_once(args, out: Path, trace: bool) -> dict:
    """One export into ``out``; ``{"seconds", "deployed", ...}`` plus the tracer's figures when ``trace``."""
    from keras_dssdn.deploy import export_bundle

    tracer = CallTracer() if trace else None
    options = dict(data=args.data, fold=args.fold, eval_limit=args.eval_limit)
    t0 = time.perf_counter()
    if tracer is not None:
        sys.setprofile(tracer)
    try:
        result = export_bundle(args.model, out, log=lambda m: None, **options)
    finally:
        sys.setprofile(None)
    record = {"seconds": round(time.perf_counter() - t0, 1), "deployed": result.report["deployed"],
              "package": sys.modules[PACKAGE].__file__}
    if tracer is not None:
        record.update(tracer.figures())
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="run folder or .keras model")
    parser.add_argument("--data", required=True, help="DCASE-layout folder (its fold's train / evaluate splits)")
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--eval-limit", type=int, default=None, help="evaluate clips (default: the whole split)")
    parser.add_argument("--out", required=True, help="folder for the bundles (must not exist)")
    parser.add_argument("--trace", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--discard", action="store_true", help="remove the bundles this run wrote afterwards")
    args = parser.parse_args(argv)
    root = Path(args.out)
    if root.exists():
        parser.error(f"--out {root} exists; choose a new folder.")
    if args.repeat < 1:
        parser.error(f"--repeat {args.repeat}: give 1 or more")
    from keras_dssdn.cli.common import run_command

    return run_command(lambda: _run(args, root))


def _run(args, root: Path) -> int:
    """The exports of :func:`main` under ``root`` and their printed figures (a bad model or data folder: one
    ``error:`` line from :func:`keras_dssdn.cli.common.run_command`)."""
    root.mkdir(parents=True)
    records = [export_once(args, root / f"bundle{i}", args.trace) for i in range(args.repeat)]
    for i, r in enumerate(records):
        line = f"export {i + 1}: {r['seconds']:.1f} s ({r['deployed']} deployed; package {r['package']})"
        if "modules" in r:
            line += (f"; {r['modules']} package modules, {r['cross_module_edges']} cross-module call edges, "
                     f"{r['back_call_edges']} back-call edges ({r['back_calls']} calls)")
        print(line)
    if records and "back_call_names" in records[0]:
        print("back-call edges (caller -> callee already on the stack: calls):")
        for edge, n in records[0]["back_call_names"].items():
            print(f"  {edge}: {n}")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1) + "\n")
    if args.discard:
        shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
