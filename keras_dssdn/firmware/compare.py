"""The target's model outputs against the host's: bit-exactness, step differences, class decisions.

The host is the ``tflite-micro`` Python package (TFLM with its reference kernels, 64-bit x86). On the same int8
inputs, :func:`output_parity` counts equal outputs and the largest difference in output quantisation steps, and
:func:`decision_parity` compares class decisions per segment and per clip (the mean dequantised output over a
clip's segments) with the near-tie rule of the host check (:func:`keras_dssdn.deploy.host_check.merge_decisions`:
a clip may change class only where the host's top two classes were within ``TIE_STEPS`` output steps).

Rules (:func:`check`): reference kernels on the target must equal the host bit for bit; CMSIS-NN kernels may
differ by steps (counted), but no clip decision may change beyond a near-tie.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from keras_dssdn.deploy import host_check
from keras_dssdn.firmware.errors import TargetMismatchError


def host_outputs(flatbuffer: bytes, tensors: np.ndarray, arena_bytes: int) -> np.ndarray:
    """int8 outputs ``(n, classes)`` of the host TFLM interpreter for int8 inputs ``(n, ...)``."""
    from keras_dssdn.deploy.micro import micro_invoke

    return micro_invoke(flatbuffer, np.asarray(tensors, np.int8), arena_bytes).astype(np.int8)


def output_parity(target: np.ndarray, host: np.ndarray) -> dict:
    """``values``, ``equal``, ``equal_fraction``, ``max_step`` and ``rows_differing`` of two int8 output arrays."""
    if target.shape != host.shape:
        raise TargetMismatchError(f"The target gave outputs of shape {target.shape}, the host {host.shape}.")
    diff = np.abs(target.astype(np.int16) - host.astype(np.int16))
    return {"values": int(diff.size), "equal": int((diff == 0).sum()),
            "equal_fraction": float((diff == 0).mean()) if diff.size else 1.0,
            "max_step": int(diff.max()) if diff.size else 0,
            "rows_differing": int((diff.max(axis=1) > 0).sum()) if diff.size else 0}


class _Table(host_check.MicroDecisions):
    """:class:`~keras_dssdn.deploy.host_check.MicroDecisions` on outputs already computed: an "input" is a row
    index into ``table`` (host rows first, then target rows)."""

    def __init__(self, table: np.ndarray, scale: float, zero_point: int):  # noqa: D107 - no TFLM here
        self.table, self.scale, self.zero_point = table, scale, zero_point

    def outputs(self, tensors: np.ndarray) -> np.ndarray:
        return self.table[np.asarray(tensors).reshape(len(tensors), -1)[:, 0]]


def decision_parity(target: np.ndarray, host: np.ndarray, scale: float, zero_point: int,
                    segments_per_clip: int) -> dict:
    """Class decisions on the target's int8 outputs vs the host's (:func:`host_check.merge_decisions` entry:
    segments / clips agreeing, ``flip_margins`` in output steps, ``near_tie_flips``)."""
    n = len(host)
    deq = lambda q: (q.astype(np.float32) - zero_point) * scale  # noqa: E731
    table = _Table(np.concatenate([deq(host), deq(target)]), scale, zero_point)
    rows = np.arange(2 * n).reshape(2 * n, 1)
    return host_check.merge_decisions([table.compare(rows[n:], rows[:n], segments_per_clip)])


def check(kernels: str, parity: dict, decisions: Optional[dict], where: str, bit_exact: bool) -> None:
    """:class:`TargetMismatchError` when the outputs break the rule (module doc): ``bit_exact`` (reference kernels
    on the same int8 inputs) requires every output equal; any clip decision may change only at a near-tie."""
    if bit_exact and parity["equal"] != parity["values"]:
        raise TargetMismatchError(
            f"TFLM's reference kernels on the target differ from the host's on {where}: {parity['equal']:,} of "
            f"{parity['values']:,} outputs equal, up to {parity['max_step']} steps apart (bit-exact required).")
    clear = [m for m in (decisions or {}).get("flip_margins", []) if m > host_check.TIE_STEPS]
    if clear:
        raise TargetMismatchError(
            f"{len(clear)} of {decisions['clips']} clips of {where} get another class on the target ({kernels} "
            f"kernels) although the host's top two classes were {min(clear):.1f} or more output steps apart "
            f"(near-ties within {host_check.TIE_STEPS:g} steps may flip).")
