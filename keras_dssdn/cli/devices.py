"""dssdn-devices: impulse responses and device spectra for unseen-device training (docs/devices.md).

    dssdn-devices responses --out irs/A --count 12 --seed 1            # synthetic band-limited responses
    dssdn-devices convolve --data DIR --responses irs/B --out DIR-B    # the evaluate split "recorded" by set B
    dssdn-devices convolve --data DIR --responses irs/A --out DIR-P --split train --paired   # paired recordings
    dssdn-devices spectra --data DIR-P --reference ref --out spectra.json    # DSMN: device minus reference log-mel

Then train with dir_folder=irs/A (dir_prob=0.6) or dsmn_file=spectra.json (dsmn_prob=0.6).
Exit status: see keras_dssdn.cli.common.
"""

from __future__ import annotations

import argparse
import sys

from keras_dssdn.cli.common import run_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dssdn-devices", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("responses", help="write synthetic impulse responses (WAV) into a new folder")
    r.add_argument("--out", required=True)
    r.add_argument("--count", type=int, default=12)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--sample-rate", type=int, default=44100)
    r.add_argument("--seconds", type=float, default=0.02, help="length of each response (default 0.02)")
    c = sub.add_parser("convolve", help="a DCASE-layout copy of a split with every clip through a response")
    c.add_argument("--data", required=True)
    c.add_argument("--responses", required=True, help="folder of impulse responses")
    c.add_argument("--out", required=True)
    c.add_argument("--split", default="evaluate")
    c.add_argument("--fold", type=int, default=1)
    c.add_argument("--paired", action="store_true", help="every clip through every response, plus the original")
    c.add_argument("--reference", default="ref", help="device name of the original clips with --paired")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--sample-rate", type=int, default=None, help="default: the package's front end rate")
    s = sub.add_parser("spectra", help="per-device mean log-mel minus the reference device's, from paired recordings")
    s.add_argument("--data", required=True, help="DCASE folder with paired recordings (TAU 2020 naming)")
    s.add_argument("--reference", default="a")
    s.add_argument("--split", default="all", help="split to measure on (default: all of meta.csv)")
    s.add_argument("--fold", type=int, default=1)
    s.add_argument("--clip-seconds", type=float, default=None)
    s.add_argument("--out", required=True, help="JSON file to write")
    return p


def _run(args) -> int:
    from keras_dssdn.fileio import check_output
    from keras_dssdn.params import DEFAULT_FRONTEND

    inputs = [("--data", getattr(args, "data", None)), ("--responses", getattr(args, "responses", None))]
    check_output(args.out, inputs, folder=args.command != "spectra")

    if args.command == "responses":
        from keras_dssdn.data.impulse import synthetic_impulse_responses, write_impulse_responses

        ir = synthetic_impulse_responses(args.count, args.sample_rate, args.seed, args.seconds)
        write_impulse_responses(args.out, ir)
        print(f"{args.out}: {len(ir)} responses ({', '.join(ir.names)})")
    elif args.command == "convolve":
        from keras_dssdn.data.impulse import convolve_dataset, load_impulse_responses

        ir = load_impulse_responses(args.responses, args.sample_rate or DEFAULT_FRONTEND.sample_rate)
        convolve_dataset(args.data, args.out, ir, split=args.split, fold=args.fold, paired=args.paired,
                         reference_device=args.reference, seed=args.seed)
        print(f"{args.out}: {args.split} split of {args.data} through {len(ir)} responses"
              + (" (paired)" if args.paired else ""))
    else:
        from keras_dssdn.data.device_spectra import compute_device_spectra

        spectra = compute_device_spectra(args.data, args.reference, split=args.split, fold=args.fold,
                                         clip_seconds=args.clip_seconds)
        spectra.save(args.out)
        for d in sorted(spectra.devices):
            v = spectra.devices[d]
            print(f"{d}: {spectra.pairs[d]} pairs, offset {v.min():+.2f} .. {v.max():+.2f} (log power)")
        print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
