"""The search space: five block widths and, optionally, the frequency split and the operator's ratio.

A point of the space is a dict of KerasTuner hyper-parameter values
(``width_1`` ... ``width_<n>`` channels, ``low_ratio``, ``partial_ratio`` or
``bottleneck_ratio``, each a fraction in (0, 1]); :meth:`SearchSpace.config`
turns it into a :class:`~keras_dssdn.models.dssdn.DSSDNConfig`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, List, Optional, Tuple

import keras_tuner

from keras_dssdn.models.dssdn import DSSDNConfig

#: Ratio hyper-parameters, in the order they are declared, and the DSSDNConfig field each sets.
RATIO_KEYS = ("low_ratio", "partial_ratio", "bottleneck_ratio")
#: Choices each ratio gets around a preset (``SearchSpace.around``).
DEFAULT_RATIO_CHOICES = (0.375, 0.5, 0.625)
DEFAULT_OPERATOR_RATIO_CHOICES = (0.125, 0.25, 0.5)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Per-block width ranges in channels (``hp.Int`` from ``widths_min[i]`` to ``widths_max[i]`` in steps of
    ``width_step``), and choice lists for the split and operator ratios (empty: not searched)."""

    widths_min: Tuple[int, ...]
    widths_max: Tuple[int, ...]
    width_step: int = 8
    low_ratios: Tuple[float, ...] = DEFAULT_RATIO_CHOICES
    partial_ratios: Tuple[float, ...] = ()
    bottleneck_ratios: Tuple[float, ...] = ()

    def __post_init__(self):
        for key in ("widths_min", "widths_max"):
            object.__setattr__(self, key, tuple(int(w) for w in getattr(self, key)))
        for key in ("low_ratios", "partial_ratios", "bottleneck_ratios"):
            object.__setattr__(self, key, tuple(sorted(float(r) for r in getattr(self, key))))
        self._validate()

    def _validate(self) -> None:
        if len(self.widths_min) != len(self.widths_max) or not self.widths_min:
            raise ValueError(f"widths_min {self.widths_min} and widths_max {self.widths_max} need one entry per block.")
        if self.width_step < 1:
            raise ValueError(f"width_step must be >= 1, got {self.width_step}.")
        for i, (lo, hi) in enumerate(zip(self.widths_min, self.widths_max), start=1):
            if not 1 <= lo <= hi:
                raise ValueError(f"block {i}: width range {lo}..{hi} is empty or below 1.")
        for key, choices in self.ratio_choices():
            if any(not 0.0 < r <= 1.0 for r in choices):
                raise ValueError(f"{key} choices must lie in (0, 1], got {choices}.")

    @classmethod
    def around(cls, base: DSSDNConfig, *, scale: Tuple[float, float] = (0.5, 2.0), width_step: int = 8,
               min_width: Optional[int] = None, max_width: Optional[int] = None, ratios: bool = True) -> "SearchSpace":
        """Widths from ``scale[0]`` to ``scale[1]`` times ``base.widths`` (rounded to ``width_step``,
        clipped to ``[min_width, max_width]``); ratios around the operator's defaults when ``ratios``."""
        lo_s, hi_s = scale
        if not 0 < lo_s <= hi_s:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}.")
        step = int(width_step)
        floor = max(step, int(min_width or step))
        lo = [max(floor, step * round(w * lo_s / step)) for w in base.widths]
        hi = [max(floor, step * round(w * hi_s / step)) for w in base.widths]
        if max_width:
            hi = [min(h, int(max_width)) for h in hi]
            lo = [min(low, h) for low, h in zip(lo, hi)]
        return cls(tuple(lo), tuple(hi), step, **_ratio_choices_for(base.operator, ratios))

    # -- KerasTuner hyper-parameters ------------------------------------------------------

    def ratio_choices(self) -> List[Tuple[str, Tuple[float, ...]]]:
        """``[(hyper-parameter name, choices), ...]`` for the three ratios (empty choices: not searched)."""
        return list(zip(RATIO_KEYS, (self.low_ratios, self.partial_ratios, self.bottleneck_ratios)))

    def searched_ratios(self) -> List[str]:
        """Names of the ratio hyper-parameters this space searches."""
        return [key for key, choices in self.ratio_choices() if choices]

    def declare(self, hp: keras_tuner.HyperParameters, base: DSSDNConfig) -> None:
        """Register the hyper-parameters in ``hp`` (defaults: ``base``'s values where they lie in the space)."""
        for i, (lo, hi) in enumerate(zip(self.widths_min, self.widths_max), start=1):
            default = min(max(base.widths[i - 1], lo), hi)
            default = lo + self.width_step * ((default - lo) // self.width_step)
            if lo == hi:
                hp.Fixed(f"width_{i}", lo)
            else:
                hp.Int(f"width_{i}", lo, hi, step=self.width_step, default=default)
        for key, choices in self.ratio_choices():
            if choices:
                value = getattr(base, key)
                hp.Choice(key, list(choices), default=value if value in choices else choices[0])

    def config(self, values, base: DSSDNConfig) -> DSSDNConfig:
        """The DSSDNConfig for hyper-parameter ``values`` (a dict or HyperParameters); missing ones keep ``base``'s."""
        if isinstance(values, keras_tuner.HyperParameters):
            values = values.values
        changes = {"widths": [int(values.get(f"width_{i}", w)) for i, w in enumerate(base.widths, start=1)]}
        for key in self.searched_ratios():
            if key in values:
                changes[key] = float(values[key])
        return base.replace(**changes)

    def corner(self, base: DSSDNConfig, largest: bool = False) -> DSSDNConfig:
        """The smallest (or largest) configuration: every width and ratio at its low (high) end.
        Parameters and MACs grow with each of them (more channels; a larger deep, low-frequency part)."""
        ends = self.widths_max if largest else self.widths_min
        values: Dict[str, float] = {f"width_{i}": w for i, w in enumerate(ends, start=1)}
        for key, choices in self.ratio_choices():
            if choices:
                values[key] = max(choices) if largest else min(choices)
        return self.config(values, base)

    def size(self) -> int:
        """Number of configurations in the space."""
        n = 1
        for lo, hi in zip(self.widths_min, self.widths_max):
            n *= (hi - lo) // self.width_step + 1
        for _, choices in self.ratio_choices():
            n *= max(1, len(choices))
        return n

    def describe(self, operator: str) -> str:
        """One line: the number of configurations, the width ranges and the searched ratios."""
        ratios = "".join(f", {k} {list(c)}" for k, c in self.ratio_choices() if c)
        return (f"{self.size():,} configurations of {operator.upper()} widths {list(self.widths_min)}.."
                f"{list(self.widths_max)} (step {self.width_step}){ratios}")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _ratio_choices_for(operator: str, ratios: bool) -> dict:
    """SearchSpace keyword arguments for the ratios of an ``operator`` (``ratios=False``: widths only)."""
    if not ratios:
        return {"low_ratios": ()}
    extra = {"low_ratios": DEFAULT_RATIO_CHOICES}
    if operator == "spc":
        extra["partial_ratios"] = DEFAULT_OPERATOR_RATIO_CHOICES
    if operator == "osc":
        extra["bottleneck_ratios"] = DEFAULT_OPERATOR_RATIO_CHOICES
    return extra
