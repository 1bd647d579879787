"""Arena estimate vs TFLM's measured arena for the packaged configurations (docs/deployment.md, "RAM").

    python tools/benchmark_ram.py                       # every preset, 1-s input
    python tools/benchmark_ram.py --sizes small large --seconds 10

For each preset: the estimate from the Keras model alone (float TFLite, planned as int8:
keras_dssdn.analysis.ram.estimate_model_arena), the estimate from the int8 model (plan_arena), and the
smallest arena the TFLM interpreter allocates and runs (measure_arena, bisection to the byte); the int8
model is calibrated on random inputs (the arena does not depend on calibration). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time


def measure_preset(size: str, seconds: float) -> dict:
    import keras_dssdn
    from keras_dssdn.analysis import ram
    from keras_dssdn.analysis.complexity import int8_tflite_bytes

    from keras_dssdn.models.presets import preset_frontend

    fe = preset_frontend(size)  # the preset's mel bands (64 for dcase_mcu_1s)
    shape = fe.input_shape(seconds)
    model = keras_dssdn.build_dssdn(keras_dssdn.PRESETS[size].replace(input_shape=list(shape)), name=size)
    t = time.time()
    keras_estimate = ram.estimate_model_arena(model)
    int8 = int8_tflite_bytes(model, shape)
    int8_estimate = ram.plan_arena(int8)
    measured = ram.measured_arena(int8)
    return {"size": size, "seconds": seconds, "input_shape": list(shape), "keras_estimate": keras_estimate.to_dict(),
            "int8_estimate": int8_estimate.to_dict(), "measured_min": measured,
            "device_ram": ram.device_ram(measured, fe, ram.flatbuffer_macs(int8)), "wall_seconds": round(time.time() - t, 1)}


def table(rows) -> str:
    lines = ["| model | input | estimate from Keras (B) | estimate from int8 .tflite (B) | TFLM measured minimum (B) | "
             "error (Keras / int8) | activations (head, B) |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        m = r["measured_min"]
        k, i = r["keras_estimate"]["total"], r["int8_estimate"]["total"]
        lines.append(f"| {r['size']} | {r['seconds']:g} s {tuple(r['input_shape'])} | {k:,} | {i:,} | {m:,} | "
                     f"{100 * (k - m) / m:+.2f} % / {100 * (i - m) / m:+.2f} % | {r['int8_estimate']['head']:,} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["small", "middle", "large", "dcase_small_1s", "dcase_mcu_1s"])
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    rows = []
    for size in args.sizes:
        rows.append(measure_preset(size, args.seconds))
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    if args.json:
        from keras_dssdn.fileio import write_json_atomic

        write_json_atomic(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
