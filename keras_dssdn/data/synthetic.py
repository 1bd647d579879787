"""A small synthetic acoustic-scene dataset in the DCASE development-set layout.

Used by the demo (``python -m keras_dssdn``), the tests and the notebook so
that everything runs without downloading TAU / TUT data. Each scene class is a
procedural sound: a coloured-noise bed (class-specific spectral tilt and a
resonant band), amplitude modulation (engine hum, crowd swell) and short
events (tonal beeps with harmonics, clicks) at class-specific rates and
pitches. Each recording *location* (``identifier``) perturbs the class
recipe, so locations never shared between train and evaluate (as in the real
folds) make the task a little harder than memorising; each *device*
(``source_label``) colours the sound with its own frequency response and gain.

Layout written (paths relative to ``root``)::

    meta.csv                          filename  scene_label  identifier  source_label
    evaluation_setup/fold1_train.csv      filename  scene_label
    evaluation_setup/fold1_evaluate.csv   filename  scene_label
    evaluation_setup/fold1_test.csv       filename
    audio/<scene>-<location>-<n>-<device>.wav   16-bit PCM mono

All files are tab-separated, exactly like TAU Urban Acoustic Scenes 2020 Mobile.
"""

from __future__ import annotations

import dataclasses
import wave
from pathlib import Path
from typing import Sequence

import numpy as np

from keras_dssdn.fileio import atomic_folder

#: Scene names (TAU 2020 classes) used in order.
#: A file in every folder :func:`make_synthetic_dataset` writes: only such a folder may be overwritten.
SYNTHETIC_MARKER = ".keras_dssdn_synthetic"

SCENES = ("airport", "bus", "metro", "metro_station", "park", "public_square",
          "shopping_mall", "street_pedestrian", "street_traffic", "tram")


@dataclasses.dataclass(frozen=True)
class SceneRecipe:
    """Generative parameters of one synthetic scene class (frequencies in Hz)."""

    tilt: float  # spectral slope of the bed: 0 white, 1 pink, 2 brown, <0 blue
    band_hz: float  # centre of a resonant band added to the bed
    band_gain: float  # linear gain of that band
    mod_hz: float  # amplitude-modulation rate of the bed
    mod_depth: float
    event_rate: float  # events per second
    event_hz: float  # fundamental of tonal events (0: clicks)


def scene_recipes(num_classes: int, seed: int = 0) -> list:
    """``num_classes`` distinct :class:`SceneRecipe` (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    tilts = np.linspace(-0.5, 2.0, num_classes)
    bands = np.geomspace(150.0, 8000.0, num_classes)
    order = rng.permutation(num_classes)  # decorrelate tilt and band
    recipes = []
    for i in range(num_classes):
        recipes.append(SceneRecipe(
            tilt=float(tilts[i]), band_hz=float(bands[order[i]]), band_gain=float(rng.uniform(2.0, 6.0)),
            mod_hz=float(rng.uniform(0.2, 8.0)), mod_depth=float(rng.uniform(0.0, 0.8)),
            event_rate=float(rng.uniform(0.0, 3.0)),
            event_hz=float(0.0 if i % 3 == 2 else rng.uniform(300.0, 3000.0)),
        ))
    return recipes


def _shaped_noise(rng, n, sr, tilt, band_hz, band_gain, device_tilt):
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    f[0] = f[1]
    shape = (f / 1000.0) ** (-(tilt + device_tilt) / 2.0)
    shape *= 1.0 + band_gain * np.exp(-0.5 * (np.log2(f / band_hz) / 0.35) ** 2)
    return np.fft.irfft(spec * shape, n)


def synthesize_clip(recipe: SceneRecipe, seconds: float, sample_rate: int, rng: np.random.Generator,
                    location_shift: float = 0.0, device_tilt: float = 0.0, device_gain: float = 1.0) -> np.ndarray:
    """One clip ``(samples,)`` float32 in [-1, 1] for ``recipe``.

    ``location_shift``: band-centre shift in octaves; ``device_tilt``: extra
    spectral slope; ``device_gain``: linear output gain.
    """
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    band = recipe.band_hz * 2.0 ** location_shift
    x = _shaped_noise(rng, n, sample_rate, recipe.tilt, band, recipe.band_gain, device_tilt)
    x /= np.std(x) + 1e-9
    x *= 1.0 + recipe.mod_depth * np.sin(2 * np.pi * recipe.mod_hz * t + rng.uniform(0, 2 * np.pi))
    num_events = rng.poisson(recipe.event_rate * seconds)
    for _ in range(num_events):
        start = rng.integers(0, max(1, n - sample_rate // 10))
        length = int(sample_rate * rng.uniform(0.03, 0.25))
        tt = np.arange(min(length, n - start)) / sample_rate
        env = np.exp(-tt * rng.uniform(10, 40))
        if recipe.event_hz > 0:
            f0 = recipe.event_hz * 2.0 ** (location_shift + rng.normal(0, 0.05))
            ev = sum(np.sin(2 * np.pi * f0 * k * tt) / k for k in (1, 2, 3))
        else:
            ev = rng.standard_normal(len(tt)) * (tt < 0.005)
        x[start:start + len(tt)] += rng.uniform(2.0, 5.0) * env * ev
    x *= device_gain * 0.08 / (np.sqrt(np.mean(x ** 2)) + 1e-9)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def write_wav16(path, samples: np.ndarray, sample_rate: int) -> None:
    """Write mono float samples in [-1, 1] as 16-bit PCM WAV."""
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def make_synthetic_dataset(
    root,
    *,
    num_classes: int = 6,
    train_locations: int = 4,
    eval_locations: int = 2,
    clips_per_location: int = 4,
    seconds: float = 10.0,
    sample_rate: int = 44100,
    devices: Sequence[str] = ("a", "b", "c"),
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic DCASE-layout dataset under ``root`` and return its path.

    ``num_classes`` scenes (at most 10, TAU 2020 names), each recorded at
    ``train_locations + eval_locations`` locations (disjoint between the
    fold-1 train and evaluate lists), ``clips_per_location`` clips each,
    cycling through ``devices``. Defaults: 6 classes x 6 locations x 4 clips =
    144 ten-second clips (96 train, 48 evaluate), about 127 MB of 16-bit WAV
    (size scales with ``seconds``).
    The folder is built in a temporary sibling and renamed into place, so an
    interrupted run leaves nothing half-written; an existing ``root`` is an
    error unless ``overwrite=True`` and it is a folder this function wrote
    (it keeps a :data:`SYNTHETIC_MARKER` file): nothing else is ever deleted.
    """
    if not 1 <= num_classes <= len(SCENES):
        raise ValueError(f"num_classes must be in 1..{len(SCENES)}, got {num_classes}.")
    if min(train_locations, eval_locations, clips_per_location) < 1 or not devices:
        raise ValueError("train_locations, eval_locations and clips_per_location must be >= 1 and devices non-empty.")
    root = Path(root)
    if root.exists() and not (overwrite and (root / SYNTHETIC_MARKER).is_file()):
        raise FileExistsError(f"{root} already exists" + (
            "; overwrite=True replaces only a folder this function wrote (it has a "
            f"{SYNTHETIC_MARKER} file), and this one has none. Choose another folder." if overwrite
            else "; pass overwrite=True (for a folder this function wrote) or choose another folder."))
    root.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(root, replace=True) as tmp:
        (tmp / "audio").mkdir()
        (tmp / "evaluation_setup").mkdir()
        meta, train, evaluate = _write_clips(tmp, num_classes, train_locations, eval_locations, clips_per_location,
                                             seconds, sample_rate, devices, seed)
        _write_tsv(tmp / "meta.csv", ("filename", "scene_label", "identifier", "source_label"), meta)
        _write_tsv(tmp / "evaluation_setup" / "fold1_train.csv", ("filename", "scene_label"), train)
        _write_tsv(tmp / "evaluation_setup" / "fold1_evaluate.csv", ("filename", "scene_label"), evaluate)
        _write_tsv(tmp / "evaluation_setup" / "fold1_test.csv", ("filename",), [(r[0],) for r in evaluate])
        (tmp / SYNTHETIC_MARKER).write_text("written by keras_dssdn.data.synthetic.make_synthetic_dataset\n")
    return root


def _write_clips(folder: Path, num_classes, train_locations, eval_locations, clips_per_location, seconds,
                 sample_rate, devices, seed):
    """Write the clips as 16-bit WAV under ``folder/audio``; ``(meta rows, train rows, evaluate rows)``."""
    rng = np.random.default_rng(seed)
    recipes = scene_recipes(num_classes, seed)
    device_tilts = {d: float(x) for d, x in zip(devices, rng.uniform(-0.4, 0.4, len(devices)))}
    device_gains = {d: float(x) for d, x in zip(devices, rng.uniform(0.5, 1.5, len(devices)))}
    meta, train, evaluate = [], [], []
    for scene, recipe in zip(SCENES, recipes):
        for loc in range(train_locations + eval_locations):
            location = f"loc{loc:02d}"
            shift = float(rng.normal(0.0, 0.25))
            for k in range(clips_per_location):
                device = devices[(loc * clips_per_location + k) % len(devices)]
                name = f"audio/{scene}-{location}-{k}-{device}.wav"
                clip = synthesize_clip(recipe, seconds, sample_rate, rng, shift,
                                       device_tilts[device], device_gains[device])
                write_wav16(folder / name, clip, sample_rate)
                meta.append((name, scene, f"{scene}-{location}", device))
                (train if loc < train_locations else evaluate).append((name, scene))
    return meta, train, evaluate


def _write_tsv(path, header, rows):
    with open(path, "w", newline="") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(row) + "\n")
