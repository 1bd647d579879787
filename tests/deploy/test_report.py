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
