"""``python -m semseg_heads.compat``: the one-line detectron2 report that set-up prints."""

from semseg_heads.compat import report_line

print(report_line())
