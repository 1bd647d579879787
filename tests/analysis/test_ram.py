"""RAM: the TFLM arena planned from a flatbuffer / a Keras model vs the TFLM interpreter, device totals."""

import sys
from pathlib import Path

import pytest

from keras_dssdn.analysis import ram
from keras_dssdn.params import DEFAULT_FRONTEND

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from _export_helpers import tiny_dssdn  # noqa: E402


def test_greedy_plan_shares_memory_between_buffers_that_are_never_alive_together():
    # a (0-1) and b (1-2) overlap in time; c (3) can reuse either's space
    assert ram.greedy_plan([100, 60, 80], [0, 1, 3], [1, 2, 3]) == 160
    assert ram.greedy_plan([100, 60, 80], [0, 1, 1], [1, 2, 2]) == 240  # all alive at step 1
    # first fit: the small buffer goes into a hole below a placed one when it fits
    assert ram.greedy_plan([64, 32, 16], [0, 2, 1], [0, 2, 2]) == 64  # 32 and 16 fit where the 64 was


def test_estimate_is_close_to_the_tflm_interpreter(tmp_path):
    from keras_dssdn.analysis.complexity import int8_tflite_bytes

    model = tiny_dssdn("spc", shape=(32, 16, 1), classes=4)
    int8 = int8_tflite_bytes(model, (32, 16, 1))
    measured = ram.measured_arena(int8)
    from_int8 = ram.plan_arena(int8)
    from_keras = ram.estimate_model_arena(model)
    assert from_int8.head == from_keras.head > 0  # same graph, same activations
    for estimate in (from_int8, from_keras):
        assert abs(estimate.total - measured) / measured < 0.10, (estimate, measured)


def test_device_ram_adds_the_front_end_and_an_audio_buffer():
    # 2 M MACs x 4 cycles at 80 MHz = 100 ms of Invoke(): 4,410 samples at 44.1 kHz, + two hops, + one empty slot
    out = ram.device_ram(100_000, DEFAULT_FRONTEND, 2_000_000, clock_hz=80e6, cycles_per_mac=4.0)
    ring = 2 * (4410 + 2 * 1024 + 1)
    assert out == {"arena": 100_000, "frontend": 6 * 2048 + 16, "audio_buffer": ring,
                   "total": 100_000 + 6 * 2048 + 16 + ring}


def test_complexity_reports_ram():
    from keras_dssdn.analysis.complexity import profile

    report = profile(tiny_dssdn("spc", shape=(32, 16, 1), classes=4), ram=True)
    assert report.ram["total"] == report.ram["arena"] + report.ram["frontend"] + report.ram["audio_buffer"]
    assert "device RAM" in report.summary_line()


@pytest.mark.parametrize("kwargs", [dict(max_ram=0)])
def test_budget_rejects_a_non_positive_ram_limit(kwargs):
    from keras_dssdn.analysis.budgets import Budget
    from keras_dssdn.errors import BudgetError

    with pytest.raises(BudgetError, match="max_ram"):
        Budget(1000, 1000, 1.0, **kwargs)
    b = Budget(1000, 1000, 1.0, max_ram=50_000)
    assert b.reason(10, 10, ram_bytes=60_000) == "RAM 60,000 B > 50,000 B (over budget)"
    assert b.fits(10, 10, ram_bytes=50_000) and "<= 50,000 B of RAM" in b.describe()
