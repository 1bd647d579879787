"""The report step: report.md and the command line's summary line from a report.json."""

from keras_dssdn.deploy.report import report_markdown, summary_line

from _export_helpers import sample_report


def test_report_markdown_sections():
    md = report_markdown(sample_report(qat=True))
    assert md.startswith("# Export report: plain")
    for heading in ("## Data", "## Accuracy and size", "## DCASE budget", "## Operators (TFLM resolver)",
                    "## Quantisation-aware training"):
        assert heading in md
    assert ("| int8 PTQ (deployed) | 50.00 % | 1.250 | 50.00 % | 1.000 | 2,456 | 48 | 2,000 / 5,120 | yes (4 inputs) |"
            in md)
    assert "- note: a note" in md and "points below float" in md and "fits" in md


def test_report_without_evaluation_and_summary():
    r = sample_report(with_metrics=False)
    md = report_markdown(r)
    assert "| float (Keras) | - | - | - | - | 2,244 (float TFLite) | - | - | - |" in md
    assert "points below float" not in md and "## Quantisation-aware training" not in md
    assert summary_line(r) == "bundle /tmp/b; PTQ bit-exact yes; deployed PTQ: 2,456 B flash, 5,120 B arena"
    assert "float acc 50.00 %" in summary_line(sample_report())


def test_on_the_device_names_the_flash_cuts():
    r = sample_report()
    r["device_memory"] = {"flash": {"model": 2000, "frontend_constants": 100, "total": 2100},
                          "ram": {"arena": 5120, "frontend": 400, "audio_buffer": 128, "total": 5648,
                                  "arena_min": 2000}}
    r["flash_cuts"] = {"bytes_before": 2456, "bytes_after": 2000, "saved": 456, "name_bytes": 300,
                       "zero_points_removed": 12, "zero_point_tensors": 3, "tflm_identical_inputs": 20}
    md = report_markdown(r)
    assert ("| flash: model (`dssdn_model_data.cc`); the converter's 2,456 B less 456 B: tensor names (300 characters) "
            "and 12 repeated 64-bit zero points; TFLM outputs identical on 20 inputs | 2,000 |") in md
    assert "| **flash total** (without code) | **2,100** |" in md
    del r["flash_cuts"]
    assert "| flash: model (`dssdn_model_data.cc`) | 2,000 |" in report_markdown(r)
