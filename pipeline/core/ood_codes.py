"""The values of the OOD layer ``<tile>_ood.tif`` (issue #18): the contract between ``eulc map
--ood`` (:mod:`model.ood`), the report and drift (:mod:`pipeline.assess`).
"""

from __future__ import annotations

OOD_NODATA = 255
"""Pixels the map has no class for."""
OOD_CODES = {0: "in distribution", 1: "rare landscape", 2: "far in feature space", 3: "both"}
"""Code → meaning: bit 1 (value 1) the landscape test, bit 2 (value 2) the feature-space distance."""
OOD_COLORS = {0: (235, 235, 235, 255), 1: (255, 170, 0, 255), 2: (200, 0, 160, 255), 3: (120, 0, 0, 255)}
"""The layer's colormap (RGBA): light grey in distribution, orange rare landscape, magenta far in
feature space, dark red both."""
