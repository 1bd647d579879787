"""dssdn-tune: search DSSDN channel widths with KerasTuner under a parameter and a MAC budget.

    dssdn-tune --size small --data ../shared/data/tut17-dev --out runs/tune/small
    dssdn-tune --size small --data DIR --out OUT --algorithm random --max-trials 8 --epochs 6 batch_size=16
    dssdn-tune --size dcase_small_1s --data DIR --out OUT          # DCASE limits: 128 K params, 30 MMACs / 1 s
    dssdn-tune --size dcase_mcu_1s --data DIR --out OUT            # ... and 128 KB of device RAM
    dssdn-tune --size middle --data DIR --out OUT --max-macs 300e6 --objective log_loss

(``python tools/tune.py ...`` is the same command; ``tools/launch_tune.sh N ...`` runs it as a distributed
search.) Every trial's configuration is profiled before training; one over budget is recorded as infeasible
(params, MACs, reason) and never trained. Rerunning the same command after a kill continues the search
(finished trials are kept; only --max-trials may grow). Writes OUT/best_config.json (for
DSSDNSmall(config=...) and `dssdn-train --config small model=OUT/best_config.json`), OUT/trials.csv,
OUT/trials.md and OUT/pareto.png. Trailing key=value pairs override the training recipe as in dssdn-train
(batch_size=16 warmup_epochs=1 ...).

Exit status (keras_dssdn.cli.common): 0 done; 1 no trial could be trained (or a bug: traceback printed);
2 bad settings or arguments, a missing path; 3 bad data; 5 impossible budget (no configuration of the space
fits); 130 interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from keras_dssdn.cli.common import run_command
from keras_dssdn.errors import ConfigError

#: Trial settings that have their own flag (a key=value override for them is refused).
_FLAGGED_KEYS = {"epochs": "--epochs", "data": "--data", "seed": "--seed", "model": "--size/--config"}


def _number(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 128000 or 30e6, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return int(round(value))


def _scale(text: str):
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH such as 0.5:2, got {text!r}") from None
    return lo, hi


def _add_search_arguments(p: argparse.ArgumentParser) -> None:
    from keras_dssdn.tune import ALGORITHMS, OBJECTIVES, SIZES

    p.add_argument("--size", default="small", choices=sorted(SIZES), help="model size (default small)")
    p.add_argument("--data", required=True, help="DCASE-layout dataset folder (fold 1 train / evaluate)")
    p.add_argument("--out", default=None, help="search folder (default runs/tune/<size>)")
    p.add_argument("--config", default=None, help="training config file or packaged name (default: the size's)")
    p.add_argument("--algorithm", default="bayesian", choices=ALGORITHMS, help="search algorithm (default bayesian)")
    p.add_argument("--max-trials", type=int, default=10,
                   help="trials in all, infeasible ones included (not used by hyperband; default 10)")
    p.add_argument("--epochs", type=int, default=8, help="epochs per trial (hyperband: the most; default 8)")
    p.add_argument("--objective", default="accuracy", choices=sorted(OBJECTIVES),
                   help="score on the evaluate fold: accuracy (max) or log_loss (min)")
    p.add_argument("--seed", type=int, default=0, help="seed of the oracle, the initialisations and the data order")
    p.add_argument("--initial-points", type=int, default=None, help="bayesian: random trials before the GP")
    p.add_argument("--hyperband-factor", type=int, default=3, help="hyperband: reduction factor (default 3)")
    p.add_argument("--overwrite", action="store_true", help="delete OUT's search and start again")
    p.add_argument("--quiet", action="store_true", help="less output")


def _add_space_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-params", type=_number, default=None,
                   help="parameter budget (default: 1,000,000; dcase_small_1s: 128,000)")
    p.add_argument("--max-macs", type=_number, default=None,
                   help="MAC budget per --budget-seconds clip (default: 700e6 per 10 s; dcase_small_1s: 30e6 per 1 s)")
    p.add_argument("--budget-seconds", type=float, default=None, help="clip length the MAC budget is for")
    p.add_argument("--max-ram", type=_number, default=None, metavar="BYTES",
                   help="device RAM budget in bytes: TFLM tensor arena (planned from the converted graph, before "
                        "training) + the C front end + an audio buffer (default: none; dcase_mcu_1s: 131,072)")
    p.add_argument("--width-scale", type=_scale, default=(0.5, 2.0),
                   help="widths range over LOW:HIGH x the size's widths (default 0.5:2)")
    p.add_argument("--width-step", type=int, default=8, help="width granularity (default 8)")
    p.add_argument("--min-width", type=int, default=None, help="no block narrower than this")
    p.add_argument("--max-width", type=int, default=None, help="no block wider than this")
    p.add_argument("--widths-only", action="store_true",
                   help="search the widths only (keep the frequency split and the SPC/OSC ratio)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dssdn-tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_search_arguments(p)
    _add_space_arguments(p)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="training-recipe overrides (dssdn-train keys)")
    return p


def _check_overrides(overrides: Sequence[str]) -> None:
    for item in overrides:
        key = item.split("=", 1)[0]
        if "=" not in item:
            raise ConfigError(f"{item!r} is not key=value")
        if key in _FLAGGED_KEYS:
            raise ConfigError(f"set {key} with {_FLAGGED_KEYS[key]}, not {item!r}")


def parse_settings(argv: Optional[Sequence[str]] = None):
    """:class:`~keras_dssdn.tune.search.SearchSettings` from command-line arguments (:class:`ConfigError` for an
    override that is not ``key=value`` or that has its own flag)."""
    from keras_dssdn.tune import SearchSettings

    args = build_parser().parse_args(argv)
    _check_overrides(args.overrides)
    return SearchSettings(
        size=args.size, data=args.data, out=args.out or f"runs/tune/{args.size}", algorithm=args.algorithm,
        max_trials=args.max_trials, epochs=args.epochs, objective=args.objective, max_params=args.max_params,
        max_macs=args.max_macs, max_ram=args.max_ram, budget_seconds=args.budget_seconds, width_scale=args.width_scale,
        width_step=args.width_step, min_width=args.min_width, max_width=args.max_width, ratios=not args.widths_only,
        config=args.config, overrides=tuple(args.overrides), seed=args.seed, initial_points=args.initial_points,
        hyperband_factor=args.hyperband_factor, overwrite=args.overwrite, verbose=0 if args.quiet else 1,
    )


def _report(result, settings) -> int:
    from keras_dssdn.tune import format_records

    print("\n" + format_records(result.records))
    print(f"\nTables: {result.out / 'trials.md'}, {result.out / 'trials.csv'}; plot: {result.out / 'pareto.png'}")
    if result.best is None:
        print("No trial was trained: every configuration tried was over budget or failed. Widen the budget or "
              "narrow the widths (--width-scale, --max-width), or add trials.", file=sys.stderr)
        return 1
    b = result.best
    print(f"Best: trial {b['trial']}, widths {b['widths']}, {b['params']:,} params, {b['macs'] / 1e6:.2f} M MACs, "
          f"accuracy {100 * b['accuracy']:.2f} %, log loss {b['log_loss']:.4f}")
    print(f"Best configuration: {result.best_config}\nTrain it:  {settings.train_command(result.best_config)}")
    return 0


def _tune(argv: Optional[Sequence[str]]) -> int:
    from keras_dssdn.tune import run_search
    from keras_dssdn.tune.tuner import distributed_role

    from keras_dssdn.fileio import check_output

    settings = parse_settings(argv)
    check_output(settings.out, [("--data", settings.data), ("--config", settings.config)], folder=True)
    result = run_search(settings)
    if distributed_role() == "worker":
        trained = list(getattr(result.tuner, "trained", []))
        print(f"worker {os.environ.get('KERASTUNER_TUNER_ID', '')}: trained trials {trained}; "
              "the chief writes the reports")
        return 0
    return _report(result, settings)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the search; returns the exit status (a user's error: one ``error: ...`` line on stderr, no traceback)."""
    return run_command(lambda: _tune(argv))


if __name__ == "__main__":
    sys.exit(main())
