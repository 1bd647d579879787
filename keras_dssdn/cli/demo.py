"""The embedded-default main job: synthetic data -> train DSSDN-Small -> evaluate -> results table.

``python -m keras_dssdn`` (or ``python -m keras_dssdn.cli.demo --help``) needs no
dataset: it writes a small synthetic DCASE-layout dataset
(:func:`keras_dssdn.data.synthetic.make_synthetic_dataset`: 6 scenes, 3 devices,
5-s clips, recording locations disjoint between train and evaluate), trains
DSSDN-Small on it with the normal training tool, evaluates the best model
on the evaluate split and prints the complexity line and the results. A few
minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path


#: A file in the demo's output folder: only such a folder (or an empty or new one) is written into.
DEMO_MARKER = ".keras_dssdn_demo"


def _prepare_out(out: Path) -> None:
    """Make ``out`` ready for a demo run: create it, or clear the ``data/`` and ``run/`` of an earlier demo.

    A folder that exists, is not empty and was not written by the demo is refused (ConfigError): the demo
    deletes nothing it did not create.
    """
    from keras_dssdn.errors import ConfigError

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; choose a folder for the demo's data and run.")
    if out.is_dir() and any(out.iterdir()) and not (out / DEMO_MARKER).is_file():
        raise ConfigError(f"--out {out} exists and holds files the demo did not write; the demo only writes into "
                          "a new or empty folder or its own earlier output. Choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text("written by python -m keras_dssdn (the demo); it replaces data/ and run/ here\n")
    for name in ("data", "run"):
        if (out / name).is_dir():
            shutil.rmtree(out / name)


def run_demo(out_dir="demo_output", epochs: int = 12, seconds: float = 5.0, model: str = "small",
             verbose: int = 2) -> dict:
    """Generate data into ``out_dir/data``, train into ``out_dir/run``; returns the metrics dict.

    ``out_dir`` must be new, empty, or an earlier demo's output (whose ``data/`` and ``run/`` are replaced).
    """
    from keras_dssdn.analysis.complexity import profile
    from keras_dssdn.analysis.metrics import markdown_report
    from keras_dssdn.data.synthetic import make_synthetic_dataset
    from keras_dssdn.train import load_train_config, train

    out = Path(out_dir)
    _prepare_out(out)
    t0 = time.perf_counter()
    data = make_synthetic_dataset(out / "data", num_classes=6, train_locations=4, eval_locations=2,
                                  clips_per_location=4, seconds=seconds, seed=0)
    print(f"synthetic dataset: {data} ({time.perf_counter() - t0:.1f} s)")
    cfg = load_train_config(model, [f"data={data}", f"clip_seconds={seconds}", f"epochs={epochs}",
                                    "warmup_epochs=1", "batch_size=16", "early_stopping_patience=0",
                                    f"out_dir={out}", "name=run", f"verbose={verbose}"])
    result = train(cfg)
    import keras

    best = keras.models.load_model(result.run_dir / "best.keras", compile=False)
    net = next(layer for layer in best.layers if isinstance(layer, keras.Model))
    report = profile(net)
    print()
    print(f"{net.name}: {report.summary_line()}")
    print(markdown_report(result.metrics, f"{net.name} on the synthetic evaluate split "
                                          f"(best epoch {result.best_epoch} of {result.epochs_run})"))
    print(f"run folder: {result.run_dir} (best.keras, metrics.json/.md, confusion.png, log.csv, tensorboard/)")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return result.metrics


def main(argv=None) -> int:
    from keras_dssdn.cli.common import run_command

    p = argparse.ArgumentParser(prog="python -m keras_dssdn", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_output",
                   help="folder for the data and the run: new, empty, or an earlier demo's (its data/ and run/ "
                        "are replaced; any other folder is refused)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seconds", type=float, default=5.0, help="clip length of the synthetic data")
    p.add_argument("--model", default="small", help="small, middle, large or baseline")
    args = p.parse_args(argv)
    if args.epochs < 1 or not args.seconds > 0:
        p.error(f"--epochs must be >= 1 and --seconds > 0 (got {args.epochs}, {args.seconds}).")

    def body() -> int:
        run_demo(args.out, args.epochs, args.seconds, args.model)
        return 0

    return run_command(body)

if __name__ == "__main__":
    sys.exit(main())
