"""Visualization: bsopt's figures, attached to optuna-dashboard and written as an HTML report.

- :mod:`~bsopt.visualization.figure_data`: pure figure data from trial records (tested by
  value);
- :mod:`~bsopt.visualization.layout`, :mod:`~bsopt.visualization.surface_figures`,
  :mod:`~bsopt.visualization.batch_figures`: Plotly figures drawn from that data;
- :mod:`~bsopt.visualization.figures`: every figure of a study by key;
- :mod:`~bsopt.visualization.dashboard`: attach them to a study, serve optuna-dashboard;
- :mod:`~bsopt.visualization.report`: one self-contained HTML report.

It may import plotly, optuna, optuna-dashboard, :mod:`bsopt.analysis`, the storage layer
(to open a storage for the dashboard) and bsopt's leaf modules; never training or search.
"""

from bsopt.visualization.dashboard import attach_figures, run_dashboard
from bsopt.visualization.figures import FIGURE_KEYS, figures_from_records, study_figures
from bsopt.visualization.report import report_html, write_report

__all__ = ["FIGURE_KEYS", "attach_figures", "figures_from_records", "report_html",
           "run_dashboard", "study_figures", "write_report"]
