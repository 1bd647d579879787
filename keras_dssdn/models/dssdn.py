"""DSSDN configuration, the generic builder and the three keras.applications-style sizes.

A DSSDN is a stem (3x3 stride-2 convolution), ``len(widths)`` DSSDBs (five in
the paper) and a head that concatenates the globally average-pooled outputs
of several blocks (``head_blocks``: low- and high-level scales) before a
dropout and a dense classifier.

Input ``(n_mels, frames, 1)`` log-mel maps (see :mod:`keras_dssdn.params`);
output ``(classes,)`` probabilities, or with ``include_top=False`` the
concatenated pooled embedding ``(sum(widths[b-1] for b in head_blocks),)``.

The paper does not publish widths, kernels or pooling; the presets below are
ours, sized with :mod:`keras_dssdn.analysis.complexity` to stay under 1 M parameters
and 0.7 GMACs per 10-s clip (Small < Middle < Large), and meant to be re-sized
by the tuner (``tools/tune.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Optional, Tuple, Union

import keras
from keras import layers

from keras_dssdn.models.blocks import conv_bn_relu, dssdb
from keras_dssdn.layers.operators import OPERATORS
from keras_dssdn.params import DEFAULT_FRONTEND
from keras_dssdn.utils.dataclass_dicts import dataclass_from_dict


@dataclasses.dataclass(frozen=True)
class DSSDNConfig:
    """Everything that defines a DSSDN architecture; round-trips through JSON.

    operator: ``"sc"`` (Large), ``"osc"`` (Middle) or ``"spc"`` (Small).
    widths: output channels of each DSSDB (one entry per block).
    pools: ``(freq, time)`` average-pool size after each block.
    head_blocks: 1-based indices of the blocks whose pooled outputs feed the head.
    low_ratio: share of frequency rows that take the deep (low-frequency) path.
    input_shape: ``(n_mels, frames, 1)``; ``frames`` may be None (any length).
    """

    operator: str = "sc"
    widths: Tuple[int, ...] = (32, 48, 64, 96, 128)
    stem_width: int = 24
    stem_strides: Tuple[int, int] = (1, 2)
    kernel_size: int = 3
    low_ratio: float = 0.5
    steps: int = 2
    distill_ratio: float = 0.5
    pools: Tuple[Tuple[int, int], ...] = ((2, 2), (2, 2), (2, 2), (1, 1), (1, 1))
    head_blocks: Tuple[int, ...] = (2, 3, 4, 5)
    partial_ratio: float = 0.25
    bottleneck_ratio: float = 0.25
    ortho_alpha: float = 0.1
    dropout: float = 0.2
    input_shape: Tuple[Optional[int], ...] = DEFAULT_FRONTEND.input_shape()
    classes: int = 10

    def __post_init__(self):
        # Normalise lists (from JSON) to tuples so configs compare and hash.
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("widths", tuple(int(w) for w in self.widths))
        set_("stem_strides", tuple(int(v) for v in self.stem_strides))
        set_("pools", tuple(tuple(int(p) for p in pool) for pool in self.pools))
        set_("head_blocks", tuple(int(b) for b in self.head_blocks))
        set_("input_shape", tuple(None if d is None else int(d) for d in self.input_shape))
        if self.operator not in OPERATORS:
            raise ValueError(f"operator must be one of {sorted(OPERATORS)}, got {self.operator!r}.")
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be positive integers, one per block, got {self.widths!r}.")
        if len(self.pools) != len(self.widths) or any(len(p) != 2 or min(p) < 1 for p in self.pools):
            raise ValueError(
                f"pools needs one (freq, time) pair of positive ints per block "
                f"({len(self.widths)} blocks), got {self.pools!r}."
            )
        if not self.head_blocks or any(not 1 <= b <= len(self.widths) for b in self.head_blocks):
            raise ValueError(f"head_blocks must be 1-based block indices in 1..{len(self.widths)}, got {self.head_blocks!r}.")
        if len(self.input_shape) != 3 or self.input_shape[0] is None or self.input_shape[2] is None:
            raise ValueError(f"input_shape must be (n_mels, frames or None, channels), got {self.input_shape!r}.")
        for key in ("low_ratio", "partial_ratio", "bottleneck_ratio", "distill_ratio"):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must be in (0, 1], got {getattr(self, key)!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}.")
        if self.classes < 1 or self.stem_width < 1 or self.steps < 1:
            raise ValueError("classes, stem_width and steps must be >= 1.")
        if len(self.stem_strides) != 2 or min(self.stem_strides) < 1:
            raise ValueError(f"stem_strides must be a (freq, time) pair of positive ints, got {self.stem_strides!r}.")

    def replace(self, **changes) -> "DSSDNConfig":
        """A copy with ``changes`` applied (unknown keys raise ValueError)."""
        return DSSDNConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return json.loads(json.dumps(d))  # tuples -> lists, as JSON gives them back

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write JSON atomically (temp file + rename)."""
        from keras_dssdn.fileio import write_text_atomic

        write_text_atomic(path, self.to_json() + "\n")

    @classmethod
    def from_dict(cls, d: dict) -> "DSSDNConfig":
        return dataclass_from_dict(cls, d, "DSSDN config")

    @classmethod
    def from_json(cls, text_or_path: Union[str, os.PathLike]) -> "DSSDNConfig":
        """Parse a JSON string, or read a JSON file if given a path."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            path = Path(text_or_path)
            if not path.is_file():
                raise FileNotFoundError(f"DSSDN config file not found: {path}")
            text = path.read_text()
        from keras_dssdn.errors import ConfigError
        from keras_dssdn.fileio import reading

        with reading(str(text_or_path)[:200], "DSSDN config (not valid JSON)", "fix it or write it again with "
                     "DSSDNConfig.save", ConfigError):
            d = json.loads(text)
        # A tuner or training run may wrap the architecture: accept {"model": {...}}.
        if "model" in d and isinstance(d["model"], dict):
            d = d["model"]
        return cls.from_dict(d)

    @classmethod
    def coerce(cls, config) -> "DSSDNConfig":
        """A DSSDNConfig from a DSSDNConfig, a dict, a JSON string or the path of a JSON file."""
        if isinstance(config, cls):
            return config
        if isinstance(config, dict):
            return cls.from_dict(config)
        if isinstance(config, (str, os.PathLike)):
            return cls.from_json(config)
        raise TypeError(f"Cannot make a DSSDN config from {type(config).__name__}: {config!r}")


def build_dssdn(
    config,
    *,
    include_top: bool = True,
    classifier_activation: Optional[str] = "softmax",
    name: str = "dssdn",
) -> keras.Model:
    """Build a DSSDN Keras model from a config (anything :meth:`DSSDNConfig.coerce` takes; preset names go
    through :func:`keras_dssdn.models.presets.resolve_config`).

    Output: ``(B, classes)`` probabilities, or the pooled multi-scale embedding with ``include_top=False``.
    """
    cfg = DSSDNConfig.coerce(config)
    inputs = keras.Input(shape=cfg.input_shape, name="log_mel")
    x = conv_bn_relu(inputs, cfg.stem_width, 3, strides=cfg.stem_strides, name="stem")
    operator_kwargs = {
        "sc": {},
        "osc": {"bottleneck_ratio": cfg.bottleneck_ratio, "ortho_alpha": cfg.ortho_alpha},
        "spc": {"partial_ratio": cfg.partial_ratio},
    }[cfg.operator]
    pooled = []
    for i, (width, pool) in enumerate(zip(cfg.widths, cfg.pools), start=1):
        x = dssdb(
            x, width, cfg.operator, name=f"block{i}", kernel_size=cfg.kernel_size,
            low_ratio=cfg.low_ratio, steps=cfg.steps,
            distill=max(1, round(width * cfg.distill_ratio)), pool=pool,
            operator_kwargs=operator_kwargs,
        )
        if i in cfg.head_blocks:
            pooled.append(layers.GlobalAveragePooling2D(name=f"block{i}_gap")(x))
    x = pooled[0] if len(pooled) == 1 else layers.Concatenate(name="head_concat")(pooled)
    if include_top:
        if cfg.dropout > 0:
            x = layers.Dropout(cfg.dropout, name="head_dropout")(x)
        # float32 output even under a mixed_float16 policy (stable softmax / loss)
        x = layers.Dense(cfg.classes, activation=classifier_activation, dtype="float32", name="predictions")(x)
    model = keras.Model(inputs, x, name=name)
    model.dssdn_config = cfg  # not serialised; run folders save the config JSON next to the model
    return model
