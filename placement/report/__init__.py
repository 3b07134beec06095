"""See a plan: one self-contained HTML page (`write_report`) and the plan in words (`device_blocks`).

``placement report INSTANCE PLAN --out plan.html`` and ``placement solve … --report
plan.html`` call `write_report`; docs/report.md describes every figure.
"""

from placement.report.page import report_html, write_report
from placement.report.summary import bound_line, device_blocks, migrations

__all__ = ["report_html", "write_report", "device_blocks", "migrations", "bound_line"]
