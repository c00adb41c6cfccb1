"""Where a model's time goes in each runtime: per-op times from the runtime's own profiler
(torch.profiler, ONNX Runtime's session profiling, OpenVINO's performance counters), mapped into
one set of categories.  ``profile_entries`` measures, ``Profile`` holds one entry (``to_dict`` /
``from_dict``), ``plot_profiles`` / ``profiles_png`` draw a stacked-bar PNG, ``table`` renders them for the
terminal."""
from __future__ import annotations

from .categories import CATEGORIES, NAMED
from .collect import PROFILERS, ProfileOptions, cannot_profile, profile_entries
from .plot import plot_profiles, profiles_png
from .record import OpTime, Profile

__all__ = ["CATEGORIES", "NAMED", "PROFILERS", "OpTime", "Profile", "ProfileOptions", "cannot_profile",
           "plot_profiles", "profile_entries", "profiles_png"]
