"""The C front end's host check on a whole evaluate split, through a full export (docs/deployment.md).

    python tools/benchmark_cfrontend.py OUT_BUNDLE [--data ../shared/data/tut17-dev] [--size dcase_small_1s]

Builds the preset (random weights, batch-norm statistics randomised so the int8 ranges are not the initial
ones), per-band normalisation statistics from 20 clips of the train split, and exports it with the whole
fold-1 evaluate split: the report's ``c_frontend`` entry (values equal, max step, segment / clip decisions
in TFLM) and ``device_memory`` are printed as JSON. The weights are untrained: the class agreement is that
of this network, not of a trained model.
"""

import argparse
import json
import time

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--data", default="../shared/data/tut17-dev")
    p.add_argument("--size", default="dcase_small_1s")
    args = p.parse_args(argv)

    import keras

    import keras_dssdn
    from keras_dssdn.data.datasets import read_clips
    from keras_dssdn.data.pipeline import evaluation_dataset
    from keras_dssdn.data.spec import PipelineSpec
    from keras_dssdn.deploy.export import export_bundle
    from keras_dssdn.layers.frontend import attach_front_end, compute_normalization_stats

    train = read_clips(args.data, split="train", fold=1)
    vocab = train.vocabulary()
    sub = train.subset(list(np.linspace(0, len(train) - 1, 20).round().astype(int)))
    from keras_dssdn.models.presets import preset_frontend

    fe = preset_frontend(args.size)  # the preset's mel bands (64 for dcase_mcu_1s)
    ds = evaluation_dataset(sub, PipelineSpec(frontend=fe, clip_seconds=10.0, segment_seconds=1.0, vocabulary=vocab,
                                              cache=None))
    stats = compute_normalization_stats(ds, mode="per_band")
    cfg = keras_dssdn.PRESETS[args.size].replace(input_shape=list(fe.input_shape(1.0)), classes=len(vocab))
    core = keras_dssdn.build_dssdn(cfg, name=args.size)
    rng = np.random.default_rng(3)
    for layer in core._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.5, c),
                               rng.uniform(0.5, 2.0, c)])
    model = attach_front_end(core, fe, stats, class_names=vocab.names, waveform_input=False, seconds=1.0)
    t = time.time()
    r = export_bundle(model, args.out, data=args.data, fold=1, segment_seconds=1.0, clip_seconds=10.0, frontend=fe,
                      force=True)
    print(json.dumps({"c_frontend": r.report["c_frontend"], "device_memory": r.report["device_memory"],
                      "flash_cuts": r.report["flash_cuts"],
                      "seconds": round(time.time() - t, 1)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
