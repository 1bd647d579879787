"""dssdn-complexity: parameters, MACs (and int8 bytes) of the presets, a tuned config or a saved model.

    dssdn-complexity                          # summary of every preset, with its budget check (RAM where limited)
    dssdn-complexity --size dcase_mcu_1s --ram  # + device RAM: TFLM arena estimate, C front end, audio buffer
    dssdn-complexity --size small --seconds 1 --table
    dssdn-complexity --config best_config.json --int8
    dssdn-complexity --model runs/small/best.keras
"""

from __future__ import annotations

import argparse
import os
import sys

from keras_dssdn.cli.common import run_command


def build_parser() -> argparse.ArgumentParser:
    from keras_dssdn.models.presets import PRESETS

    p = argparse.ArgumentParser(prog="dssdn-complexity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--size", choices=sorted(PRESETS), help="one preset (default: summary of all)")
    src.add_argument("--config", help="DSSDN config JSON (e.g. a tuned one)")
    src.add_argument("--model", help="a saved .keras model (any architecture)")
    p.add_argument("--seconds", type=float, default=None, help="clip length for the input (default: the model's own)")
    p.add_argument("--table", action="store_true", help="print the per-layer table")
    p.add_argument("--int8", action="store_true", help="also convert to int8 TFLite and report its bytes")
    p.add_argument("--ram", action="store_true",
                   help="also estimate device RAM: TFLM tensor arena (planned from the converted graph), the C front "
                        "end and an audio buffer, in bytes")
    return p


def _model(args):
    """``(model, front end)``: a preset or config is counted under its own mel bands
    (:func:`~keras_dssdn.models.presets.preset_frontend`), a saved model under the default front end."""
    from keras_dssdn.inference.loading import load_classifier
    from keras_dssdn.models.dssdn import build_dssdn
    from keras_dssdn.models.presets import preset_frontend, resolve_config
    from keras_dssdn.params import DEFAULT_FRONTEND

    if args.model:
        return load_classifier(args.model), DEFAULT_FRONTEND
    try:
        cfg = resolve_config(args.size or args.config)
    except (ValueError, TypeError, OSError) as e:
        from keras_dssdn.errors import ConfigError

        raise ConfigError(f"--config {args.config}: {e}") from None
    return build_dssdn(cfg, name=f"dssdn_{args.size}" if args.size else "dssdn"), preset_frontend(cfg)


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.seconds is not None and not args.seconds > 0:
        p.error(f"--seconds must be > 0, got {args.seconds}.")
    if args.model and not os.path.isfile(args.model):
        p.error(f"model file not found: {args.model}")

    def body() -> int:
        from keras_dssdn.analysis.complexity import preset_summary, profile
        from keras_dssdn.models.presets import PRESETS

        if args.size is None and args.config is None and args.model is None:
            print(preset_summary(list(PRESETS), int8=args.int8, ram=args.ram))
            return 0
        model, frontend = _model(args)
        report = profile(model, seconds=args.seconds, frontend=frontend, int8=args.int8, ram=args.ram)
        print(report.table() if args.table else report.summary_line())
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
