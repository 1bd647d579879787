"""TFLM tensor-arena probe, run in a child process by keras_dssdn.deploy.micro.measure_arena.

    python -c "<this file's text>" MODEL.tflite UPPER_BYTES

Imports only the TFLM runtime (no TensorFlow): TFLM crashes on arenas of a few
hundred bytes, so probes never run in the exporting process. A probe builds
the interpreter with ``n`` bytes of arena and runs one inference on a zero
input. Writes the RecordingMicroAllocator report to stderr after the line
``@@ALLOCATIONS@@``, then ``{"min_bytes": N, "probe_upper": UPPER}`` (the
smallest arena that runs, by bisection to the byte from 1024 bytes) on
stdout. Exit status 3 (and ``{"error": ...}``) when UPPER_BYTES does not allocate.
"""

import json
import sys

import numpy as np
from tflite_micro.python.tflite_micro import runtime


def runs_with(model: bytes, n: int):
    """The interpreter when ``n`` bytes of arena allocate and run one inference, else None."""
    try:
        it = runtime.Interpreter.from_bytes(model, arena_size=n)
        d = it.get_input_details(0)
        it.set_input(np.zeros(d["shape"], d["dtype"]), 0)
        it.invoke()
        return it
    except RuntimeError:
        return None


def smallest_arena(model: bytes, upper: int) -> int:
    """Bisection between 1024 bytes and ``upper`` (which runs)."""
    lo, hi = 1024, upper
    if runs_with(model, lo) is not None:
        hi = lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if runs_with(model, mid) is not None:
            hi = mid
        else:
            lo = mid
    return hi


def main(path: str, upper: int) -> int:
    model = open(path, "rb").read()
    it = runs_with(model, upper)
    if it is None:
        print(json.dumps({"error": "does not allocate with %d bytes" % upper}))
        return 3
    sys.stderr.flush()
    print("@@ALLOCATIONS@@", file=sys.stderr, flush=True)
    it.print_allocations()
    sys.stderr.flush()
    print(json.dumps({"min_bytes": smallest_arena(model, upper), "probe_upper": upper}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
