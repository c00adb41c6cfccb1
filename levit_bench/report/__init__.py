"""Markdown reports from one or more results files: tables, a paper table, a plot, the headline.

Results files from several machines merge into one report, one section per machine
(``merge``).  Nothing is dropped silently: entries that failed or were skipped are listed with
their reasons, and an entry measured again in a later file lists the one it replaced.  Each figure
names the results files it comes from and the command that regenerates them (``config.argv``).

Modules: ``merge`` (files → machines), ``choice`` (which setting and entry a figure uses),
``sections`` (per-machine tables), ``headline`` (LeViT vs EfficientNet), ``plot`` (speed-accuracy),
``document`` (assembling and writing).
"""
from __future__ import annotations

from .choice import choose_setting, is_paper_setting, setting_words
from .document import Report, build_report, report_paths, write_report
from .headline import Headline, headline_section, headlines
from .merge import Machine, Sourced, base_model, group_by_machine, load_results
from .plot import speed_accuracy_panels

__all__ = [
    "Headline", "Machine", "Report", "Sourced", "base_model", "build_report", "choose_setting", "group_by_machine",
    "headline_section", "headlines", "is_paper_setting", "load_results", "report_paths", "setting_words",
    "speed_accuracy_panels", "write_report",
]
