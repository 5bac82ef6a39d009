"""The classical robust statistics, kept under their historical module name.

The statistics now live in :mod:`qkrum.rules.statistics` and the rules built on them
(options, sources, choices) in :mod:`qkrum.rules.classical`; this module re-exports the
statistics so that ``qkrum.baselines.geometric_median(x, mask)`` keeps working.
"""

from qkrum.rules.statistics import (
    ClippedCenter,
    GeometricMedian,
    bulyan_order,
    centered_clipping,
    closest_to_median_mean,
    coordinate_median,
    geometric_median,
    trimmed_mean,
)

__all__ = ["ClippedCenter", "GeometricMedian", "bulyan_order", "centered_clipping", "closest_to_median_mean",
           "coordinate_median", "geometric_median", "trimmed_mean"]
