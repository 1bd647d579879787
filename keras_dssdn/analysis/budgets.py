"""Complexity budgets: the one definition every check uses (complexity tables, the tuner, the exporter).

A :class:`Budget` is "at most ``max_params`` parameters and at most
``max_macs`` multiply-accumulates per clip of ``seconds``", optionally with
at most ``max_int8_bytes`` of int8 weights and at most ``max_ram`` bytes of
device RAM (TFLM tensor arena + the C front end's state + an audio buffer:
:func:`keras_dssdn.analysis.ram.device_ram`). The limits are inclusive.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from keras_dssdn.errors import BudgetError


def format_macs(macs: float) -> str:
    """``12.34 M`` below 1e9, ``1.234 G`` above."""
    return f"{macs / 1e6:,.2f} M" if macs < 1e9 else f"{macs / 1e9:,.3f} G"


@dataclasses.dataclass(frozen=True)
class Budget:
    """At most ``max_params`` parameters and ``max_macs`` MACs per clip of ``seconds`` (and, when set, at
    most ``max_int8_bytes`` bytes of int8 weights and ``max_ram`` bytes of device RAM)."""

    max_params: int
    max_macs: int
    seconds: float = 10.0
    max_int8_bytes: Optional[int] = None
    max_ram: Optional[int] = None

    def __post_init__(self):
        if self.max_params < 1 or self.max_macs < 1 or self.seconds <= 0 or (
                self.max_int8_bytes is not None and self.max_int8_bytes < 1) or (
                self.max_ram is not None and self.max_ram < 1):
            raise BudgetError(f"A budget needs max_params >= 1, max_macs >= 1, seconds > 0 (and max_int8_bytes >= 1, "
                              f"max_ram >= 1 when set); got {self}.")

    def reason(self, params: int, macs: int, int8_bytes: Optional[int] = None,
               ram_bytes: Optional[int] = None) -> Optional[str]:
        """None when ``(params, macs[, int8_bytes][, ram_bytes])`` fits, else a one-line reason."""
        over = []
        if params > self.max_params:
            over.append(f"params {params:,} > {self.max_params:,}")
        if macs > self.max_macs:
            over.append(f"MACs {format_macs(macs)} > {format_macs(self.max_macs)} per {self.seconds:g} s")
        if self.max_int8_bytes is not None and int8_bytes is not None and int8_bytes > self.max_int8_bytes:
            over.append(f"int8 weights {int8_bytes:,} B > {self.max_int8_bytes:,} B")
        if self.max_ram is not None and ram_bytes is not None and ram_bytes > self.max_ram:
            over.append(f"RAM {ram_bytes:,} B > {self.max_ram:,} B")
        return ", ".join(over) + " (over budget)" if over else None

    def fits(self, params: int, macs: int, int8_bytes: Optional[int] = None, ram_bytes: Optional[int] = None) -> bool:
        return self.reason(params, macs, int8_bytes, ram_bytes) is None

    def describe(self) -> str:
        text = f"<= {self.max_params:,} params and <= {format_macs(self.max_macs)} MACs per {self.seconds:g}-s clip"
        text += f", <= {self.max_int8_bytes:,} B of int8 weights" if self.max_int8_bytes else ""
        return text + (f", <= {self.max_ram:,} B of RAM" if self.max_ram else "")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: The paper's envelope for the three sizes: under 1 M parameters and 0.7 GMACs per 10-s clip.
PAPER_BUDGET = Budget(1_000_000, 700_000_000, 10.0)

#: DCASE 2022-2024 Task 1 limits: 128 K parameters (128 KB of int8 weights) and 30 MMACs per 1-s clip.
DCASE_BUDGET = Budget(128_000, 30_000_000, 1.0, max_int8_bytes=128 * 1024)

#: The DCASE limits on a microcontroller with 128 KB of RAM for everything the model needs: TFLM tensor arena,
#: the C front end's state and the audio buffer (:func:`keras_dssdn.analysis.ram.device_ram`).
DCASE_MCU_BUDGET = dataclasses.replace(DCASE_BUDGET, max_ram=128 * 1024)

DCASE_MAX_PARAMS = DCASE_BUDGET.max_params
DCASE_MAX_MACS = DCASE_BUDGET.max_macs
DCASE_MAX_INT8_BYTES = DCASE_BUDGET.max_int8_bytes

#: The budget each packaged size is held to (by the complexity table, the tuner and the exporter).
DEFAULT_BUDGETS = {
    "small": PAPER_BUDGET,
    "middle": PAPER_BUDGET,
    "large": PAPER_BUDGET,
    "dcase_small_1s": DCASE_BUDGET,
    "dcase_mcu_1s": DCASE_MCU_BUDGET,
}
