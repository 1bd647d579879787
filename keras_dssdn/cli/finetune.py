"""dssdn-finetune: one fine-tuned model per recording device of a trained run (DCASE 2025 device-specific models).

    dssdn-finetune --run-dir runs/small                       # every training device, 3 epochs at 0.1 x the LR
    dssdn-finetune --run-dir runs/small --epochs 5 --lr-ratio 0.05 --devices a,b --min-clips 20
    dssdn-evaluate --model runs/small --data DIR              # each clip scored by its device's model
    dssdn-predict --model runs/small --device auto clips/     # device from the file name (TAU: ...-a.wav)
    dssdn-export --run-dir runs/small --per-device --out bundles/small   # one bundle per device model

The models go to <run>/devices/<NN>_<device>/best.keras, listed in <run>/devices/index.json with their
accuracy on the device's evaluate clips (general vs fine-tuned) when the evaluate split has any. The
run's best.keras stays the general model, used for devices without a model of their own (said when used).
docs/devices.md. Exit status: see keras_dssdn.cli.common.
"""

from __future__ import annotations

import argparse
import sys

from keras_dssdn.cli.common import run_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dssdn-finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", required=True, help="a finished training run folder")
    p.add_argument("--epochs", type=int, default=3, help="epochs per device (default 3)")
    p.add_argument("--lr-ratio", type=float, default=0.1, help="learning rate = this x the run's (default 0.1)")
    p.add_argument("--min-clips", type=int, default=4, help="skip devices with fewer training clips (default 4)")
    p.add_argument("--devices", help="comma-separated devices to fine-tune (default: all in the training data)")
    p.add_argument("--data", help="the run's dataset, if it moved")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from keras_dssdn.train.finetune import FinetuneSettings, finetune_devices

        settings = FinetuneSettings(epochs=args.epochs, lr_ratio=args.lr_ratio, min_clips=args.min_clips,
                                    devices=args.devices.split(",") if args.devices else None, data=args.data,
                                    verbose=0 if args.quiet else 1)
        index = finetune_devices(args.run_dir, settings, log=(lambda *a: None) if args.quiet else print)
        print(f"{args.run_dir}/devices: fine-tuned models for {sorted(index)}")
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
