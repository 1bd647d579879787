"""dssdn-export: a trained model -> float / int8 TFLite and a verified TensorFlow Lite Micro bundle.

    dssdn-export --model run/best.keras --data ../shared/data/tut17-dev --fold 1 --out bundle/
    dssdn-export --run-dir run/ --out bundle/ --qat-epochs 3     # data, fold from the run's config.json
    dssdn-export --check bundle/     # the bundle as it is on disk: manifest (sizes, SHA-256), TFLM == reference
    python tools/export.py ... / python -m keras_dssdn.cli.export ...   # the same

Library: :func:`keras_dssdn.deploy.export.export_bundle`; the bundle: docs/deployment.md.
Exit status (:mod:`keras_dssdn.cli.common`): 0 exported and verified; a user's
error prints one ``error: ...`` line and returns its family's status: 2 a bad
argument or a missing path, 3 data, 4 a run folder or model file, 6 the
export (conversion, verification, an existing bundle without ``--force``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from keras_dssdn.cli.common import run_command

PROG = "dssdn-export"


def build_parser() -> argparse.ArgumentParser:
    from keras_dssdn.deploy.settings import DEFAULT_NUM_CALIBRATION, DEFAULT_NUM_VERIFY

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Export a trained model to float / int8 TFLite and a verified TensorFlow Lite Micro bundle.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a trained .keras model (its run folder, if any, supplies the rest)")
    src.add_argument("--run-dir", help="a training run folder (best.keras, frontend.json, labels.json, config.json...)")
    src.add_argument("--check", metavar="BUNDLE", help="check an existing bundle as it is on disk: its files against "
                     "manifest.json (sizes, SHA-256) and TFLM against the TFLite reference kernels; writes nothing")
    p.add_argument("--out", help="bundle folder to create (must not exist unless --force; required unless --check)")
    p.add_argument("--data", help="DCASE dataset folder (e.g. ../shared/data/tut17-dev) or path,label CSV: train "
                                  "split -> calibration and QAT, evaluate split -> accuracy and bit-exactness inputs "
                                  "(default: the run's)")
    p.add_argument("--fold", type=int, default=1, help="evaluation-setup fold (default 1, or the run's)")
    p.add_argument("--seconds", type=float, default=None, help="clip length the pipeline reads (default: the "
                                                                "run's, else the front end's clip_seconds, 10)")
    p.add_argument("--segment", type=float, default=None, help="audio per inference in seconds (default: read off "
                                                                "the model input, e.g. 1 for a 44-frame model)")
    p.add_argument("--num-calibration", type=int, default=DEFAULT_NUM_CALIBRATION,
                   help=f"calibration examples (default {DEFAULT_NUM_CALIBRATION})")
    p.add_argument("--num-verify", type=int, default=DEFAULT_NUM_VERIFY,
                   help=f"real inputs for the TFLM bit-exactness check (default {DEFAULT_NUM_VERIFY})")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate on this many clips only (smoke tests)")
    p.add_argument("--qat-epochs", type=int, default=0, help="epochs of quantisation-aware training (0: PTQ only)")
    p.add_argument("--qat-lr", type=float, default=None, help="QAT learning rate (default 1e-4)")
    p.add_argument("--qat-batch-size", type=int, default=None, help="QAT batch size (default 32)")
    p.add_argument("--qat-augment", choices=("run", "none"), default="run",
                   help="QAT data augmentation: the training run's (config.json; default) or none")
    p.add_argument("--qat-distill", choices=("run", "none"), default="run",
                   help="QAT targets of a distilled run: its labels mixed with its teacher's probabilities (T = 1, "
                        "the run's kd_weight; default) or the labels alone")
    p.add_argument("--deploy", choices=("best", "ptq", "qat"), default="best",
                   help="int8 model for the device files (default: best accuracy on the evaluation set)")
    p.add_argument("--max-drop", type=float, default=None,
                   help="fail if deployed int8 accuracy is more than this many points below float")
    p.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    p.add_argument("--per-device", action="store_true", help="with --run-dir: one bundle per fine-tuned device model "
                   "(dssdn-finetune) and one for the general model, each checked against the complexity budget")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    return p


def settings_from_args(args: argparse.Namespace, command: str):
    """The :class:`~keras_dssdn.deploy.settings.ExportSettings` of parsed arguments."""
    from keras_dssdn.deploy.settings import ExportSettings

    qat_options = {k: v for k, v in (("learning_rate", args.qat_lr), ("batch_size", args.qat_batch_size),
                                     ("augment", args.qat_augment), ("distill", args.qat_distill)) if v is not None}
    return ExportSettings.from_options(
        data=args.data, fold=args.fold, clip_seconds=args.seconds, segment_seconds=args.segment,
        num_calibration=args.num_calibration, num_verify=args.num_verify, eval_limit=args.eval_limit,
        qat_epochs=args.qat_epochs, qat_options=qat_options, deploy=args.deploy, max_accuracy_drop=args.max_drop,
        force=args.force, command=command)


def _data_must_exist(path: Optional[str]) -> None:
    if path is not None and not os.path.exists(path):
        raise FileNotFoundError(f"--data {path} does not exist (expected a DCASE folder with evaluation_setup/ "
                                "or a path,label CSV).")


def command_line(argv: Optional[Sequence[str]]) -> str:
    """The command as a user would type it again (recorded in the report): ``dssdn-export ...`` when run as
    that console script, else the equivalent ``python tools/export.py ...``."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    head = PROG if invoked == PROG else "python tools/export.py"
    return " ".join([head, *(sys.argv[1:] if argv is None else list(argv))])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the export command; returns the exit status (see the module doc)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.check is None and args.out is None:
        parser.error("the following arguments are required: --out (or --check BUNDLE)")
    command = command_line(argv)

    def body() -> int:
        from keras_dssdn.deploy.export import export_bundle
        from keras_dssdn.deploy.report import summary_line

        log = (lambda *a, **k: None) if args.quiet else (lambda *a, **k: print(*a, **k, flush=True))
        if args.check is not None:
            from keras_dssdn.deploy.bundle import check_bundle_on_disk

            result = check_bundle_on_disk(args.check, log=log)
            print(f"{args.check}: intact ({result['files']} files) and bit-exact in TFLM on {result['inputs']} "
                  "inputs")
            return 0
        _data_must_exist(args.data)
        if args.per_device:  # docs/devices.md
            from keras_dssdn.deploy.devices import export_device_bundles

            record = export_device_bundles(args.run_dir or args.model, args.out, settings_from_args(args, command),
                                           log=log)
            print(f"{args.out}: bundles for the general model and devices {sorted(record['devices'])}")
            return 0
        result = export_bundle(args.model or args.run_dir, args.out, settings_from_args(args, command), log=log)
        print(summary_line(result.report))
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
