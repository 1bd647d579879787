"""Device RAM of a preset with the audio that arrives during Invoke(): the audio ring at several rates and clocks.

    python tools/benchmark_audio_ring.py --size dcase_mcu_1s --arena 98984 109568

For each arena figure (bytes: a measured minimum from tools/benchmark_ram.py, a bundle's recommended
``kTensorArenaSize``) prints the RAM total (arena + C front end + audio ring) and the headroom on a 128 KB part at
the default clock and cycles per MAC (keras_dssdn.analysis.ram), then the same at 16 and 48 kHz (the overrides of
dcase_mcu_1s.yaml; same input shape, so the same arena) and at faster clocks. MACs are counted on the preset's
Keras graph (equal to the int8 flatbuffer's count). Seconds: a few (one graph trace).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RATES = {"44.1 kHz": [], "16 kHz": ["frontend.sample_rate=16000", "frontend.n_fft=1024", "frontend.win_length=1024",
                                     "frontend.hop_length=368"],
         "48 kHz": ["frontend.sample_rate=48000", "frontend.hop_length=1104"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="dcase_mcu_1s")
    ap.add_argument("--arena", type=int, nargs="+", required=True, help="arena bytes (measured or recommended)")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--clocks", type=float, nargs="*", default=[80e6, 120e6, 168e6])
    args = ap.parse_args(argv)

    import keras_dssdn
    from keras_dssdn.analysis import ram
    from keras_dssdn.analysis.complexity import profile
    from keras_dssdn.models.presets import preset_frontend
    from keras_dssdn.train.config import load_train_config

    base = preset_frontend(args.size)
    model = keras_dssdn.build_dssdn(keras_dssdn.PRESETS[args.size].replace(
        input_shape=list(base.input_shape(1.0)), classes=args.classes))
    macs = profile(model).macs
    print(f"{args.size}: {macs:,} MACs per 1-s segment; {ram.MODEL_CYCLES_PER_MAC:g} cycles per MAC (keras_dssdn.analysis.ram.MODEL_CYCLES_PER_MAC: measured instructions, docs/firmware.md)")
    print("| rate | clock | Invoke() | arena | front end | audio ring (samples / B) | RAM total | headroom on 128 KB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for rate, overrides in RATES.items():
        fe = base if not overrides else load_train_config("dcase_mcu_1s", overrides).frontend_params()
        if fe.input_shape(1.0) != base.input_shape(1.0):
            continue
        for clock in args.clocks:
            ring = ram.audio_ring(fe.sample_rate, fe.hop_length, macs, clock_hz=clock)
            for arena in args.arena:
                d = ram.device_ram(arena, fe, macs, clock_hz=clock)
                h = ram.ram_headroom(d["total"], arena, d["frontend"], ring, fe.hop_length)
                print(f"| {rate} | {clock / 1e6:g} MHz | {1000 * ring['invoke_seconds']:.1f} ms | {arena:,} | "
                      f"{d['frontend']:,} | {ring['samples']:,} / {ring['bytes']:,} | {d['total']:,} | "
                      f"{h['headroom_bytes']:+,}" + ("" if h["fits"] else " (over)") + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
