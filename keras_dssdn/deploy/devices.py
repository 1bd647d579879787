"""One TensorFlow Lite Micro bundle per device model of a run (DCASE 2025: device-specific models).

:func:`export_device_bundles` exports the run's general model and each fine-tuned device model
(:func:`keras_dssdn.train.finetune.finetune_devices`) with :func:`keras_dssdn.deploy.export.export_bundle`
(the one export entry: every bundle is converted, verified and written the same way) into::

    <out>/general/          the general model's bundle (devices without a model of their own)
    <out>/<NN>_<device>/    one bundle per fine-tuned device model
    <out>/devices.json      {"general": "general", "devices": {device: folder}, "complexity": {...}}

Each model is checked against the run's complexity budget before it is exported (parameters and MACs per
clip of the budget's length, :mod:`keras_dssdn.analysis.budgets`): the DCASE limits apply to every
device model, so one over budget stops the export with a
:class:`~keras_dssdn.errors.BudgetError` naming it. ``devices.json`` is written last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

INDEX = "devices.json"


def run_budget(run):
    """The budget a run's models are held to: the packaged size's, else the DCASE budget for a <= 1-s input, else
    the paper's."""
    from keras_dssdn.analysis.budgets import DCASE_BUDGET, DEFAULT_BUDGETS, PAPER_BUDGET

    model = str(run.config().get("model", ""))
    seconds = run.segment_seconds() or run.clip_seconds() or run.frontend().clip_seconds
    if seconds <= 1.0:
        return DCASE_BUDGET
    return DEFAULT_BUDGETS.get(model, PAPER_BUDGET)


def complexity_check(model, budget, frontend) -> dict:
    """``{"params", "macs", "seconds", "fits", "reason"}`` of a model against ``budget`` (MACs scaled linearly from
    the model's input length to the budget's clip length)."""
    from keras_dssdn.analysis.complexity import profile

    report = profile(model)
    seconds = frontend.seconds_for_frames(int(model.input_shape[2]))
    macs = int(round(report.macs * budget.seconds / seconds))
    reason = budget.reason(report.params, macs)
    return {"params": report.params, "macs": macs, "seconds": budget.seconds, "fits": reason is None,
            "reason": reason, "budget": budget.describe()}


def _device_settings(settings, run):
    """``settings`` completed with what a device model (outside the run's own files) cannot find itself: the run's
    data, fold and clip length, front end and class names."""
    import dataclasses

    settings = settings.with_run_defaults(run.config())
    model = settings.model
    return dataclasses.replace(settings, model=dataclasses.replace(
        model, frontend=model.frontend or run.frontend(),
        class_names=model.class_names or list(run.vocabulary().names)))


def export_device_bundles(run_dir, out_dir, settings=None, *, log: Callable = print, **options) -> dict:
    """Export the general and every device model of the run in ``run_dir`` under ``out_dir`` (must not exist);
    ``settings``: an :class:`~keras_dssdn.deploy.settings.ExportSettings`, or its flat keywords (``options``), as
    :func:`~keras_dssdn.deploy.export.export_bundle` takes them. Returns the ``devices.json`` written."""
    import keras

    from keras_dssdn.deploy.settings import ExportSettings

    from keras_dssdn.deploy.export import export_bundle
    from keras_dssdn.errors import BudgetError, RunFolderError
    from keras_dssdn.fileio import write_json_atomic
    from keras_dssdn.runs import RunFolder

    run = RunFolder(run_dir)
    paths = run.device_models()
    if not paths:
        raise RunFolderError(f"{run.path} has no device models ({run.file('devices/index.json')}); make them with "
                             "dssdn-finetune first.")
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose another --out for the device bundles.")
    index = run.device_index()
    models = {"general": ("general", run.model_path())}
    models.update({d: (index[d]["folder"], p) for d, p in paths.items()})
    budget, frontend = run_budget(run), run.frontend()
    checks = {}
    for name, (_, path) in models.items():
        checks[name] = complexity_check(keras.models.load_model(path, compile=False), budget, frontend)
        if not checks[name]["fits"]:
            raise BudgetError(f"model of {name!r} ({path}): {checks[name]['reason']} for {budget.describe()}; the "
                              "limits apply to every device model.")
    settings = _device_settings(settings or ExportSettings.from_options(**options), run)
    out.mkdir(parents=True)
    for name, (folder, path) in models.items():
        log(f"{name}: {checks[name]['params']:,} params, {checks[name]['macs']:,} MACs per "
            f"{checks[name]['seconds']:g} s: within {budget.describe()}")
        export_bundle(str(path), out / folder, settings, log=log)
    record = {"general": "general", "devices": {d: models[d][0] for d in paths}, "complexity": checks}
    write_json_atomic(out / INDEX, record)
    return record
