"""chairseg: the Chair Segments application built on ``semseg_heads``.

The procedural generator and the downloader (``chairseg.data``), measurement
(``chairseg.measure``), training-curve plots (``chairseg.metrics_plot``), the browser demo's app
(``chairseg.serve``) and the architecture study (``chairseg.study``). The library
(``semseg_heads``) never imports this package.
"""

__version__ = "0.1.0"
