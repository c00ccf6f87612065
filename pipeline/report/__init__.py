"""The comparison report: which fusion method helps detection and segmentation, by how much, and
can the difference be trusted?

:func:`build_report` reads every stage's results (:mod:`.load`), computes each fusion method's gains
over infrared-only, visible-only and the best single modality with two-level paired-bootstrap
intervals over training seeds and test images at ``report.confidence`` (:mod:`.gains`,
:mod:`.bootstrap`), checks that the controls come out as they must (:mod:`.sensitivity`), and writes ``results/report/`` (:mod:`.build`):
``summary.json`` (DVC metrics), ``gains.csv`` (DVC plot), one CSV per table, ``report.md`` and a
self-contained ``report.html`` (:mod:`.render`, :mod:`.figures`, :mod:`.examples`).
(``tests/_browser.py``, used only by the tests, opens the HTML in headless Chromium to check it renders.)
"""
from pipeline.report.build import build_report, report_config

__all__ = ["build_report", "report_config"]
