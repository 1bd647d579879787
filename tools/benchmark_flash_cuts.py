"""The flash cuts of an export (keras_dssdn.deploy.flash_cuts) on bundles already written, with real inputs.

    python tools/benchmark_flash_cuts.py RUN_DIR BUNDLE [RUN_DIR BUNDLE ...]

For each pair: the bundle's ``model_int8.tflite`` (the converter's) is slimmed as an export now does it; TFLM
runs both on the run's calibration examples (the export's calibration step: up to 200 segments of the train
split, through the training pipeline) and must give identical int8 outputs with the same smallest arena. Prints
one JSON line per bundle (bytes before / after, what was cut, inputs, seconds) and a Markdown table. Read-only:
nothing is written into the run folder or the bundle.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def measure(run_dir: str, bundle: str) -> dict:
    from keras_dssdn.deploy import micro
    from keras_dssdn.deploy.calibrate import calibrate
    from keras_dssdn.deploy.export_data import resolve_sources
    from keras_dssdn.deploy.prepare import prepare_model
    from keras_dssdn.deploy.settings import ExportSettings
    from keras_dssdn.deploy.flash_cuts import apply_flash_cuts
    from keras_dssdn.inference.tflite import TFLiteRunner

    t = time.time()
    flatbuffer = (Path(bundle) / "model_int8.tflite").read_bytes()
    prep = prepare_model(run_dir)
    settings = ExportSettings.from_options().with_run_defaults(prep.run_config)
    prep, sources = resolve_sources(prep, settings.data)
    examples = calibrate(prep, settings.data, sources, log=lambda *a: None).examples
    xq = TFLiteRunner(flatbuffer, reference=True).to_input(examples)
    result = apply_flash_cuts(flatbuffer, xq, micro.measure_arena(flatbuffer))
    return {"run": run_dir, "bundle": bundle, **result.report, "seconds": round(time.time() - t, 1)}


def table(rows) -> str:
    lines = ["| bundle | converter's .tflite (B) | device model (B) | saved (B) | tensor-name characters | "
             "zero points removed (tensors) | TFLM identical on | arena min (B) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {Path(r['bundle']).name} | {r['bytes_before']:,} | {r['bytes_after']:,} | {r['saved']:,} | "
                     f"{r['name_bytes']:,} | {r['zero_points_removed']:,} ({r['zero_point_tensors']}) | "
                     f"{r['tflm_identical_inputs']} real inputs | {r['arena_min_bytes']:,} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pairs", nargs="+", metavar="RUN_DIR BUNDLE")
    args = p.parse_args(argv)
    if len(args.pairs) % 2:
        p.error("give RUN_DIR BUNDLE pairs")
    rows = []
    for run_dir, bundle in zip(args.pairs[::2], args.pairs[1::2]):
        rows.append(measure(run_dir, bundle))
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
