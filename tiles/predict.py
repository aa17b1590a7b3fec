"""Apply a ModelBundle to a feature COG: class and confidence COGs (paper §3.5 inference).

Bands are read by name in the bundle's order; pixel-centre lon/lat come from the transform
via pyproj (EPSG:3035 → EPSG:4326, ``always_xy=True``); inputs go through the bundle's
normaliser and the invariant branch in sub-batches of 16,384 pixels under
``torch.inference_mode``. Pixels where any feature is NaN become nodata (255) and are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.bundle import ModelBundle
from model.infer import predict_proba
from tiles.cog import write_cog
from tiles.featurecog import read_feature_cog
from tiles.grid import pixel_centres_lonlat

NODATA = 255


@dataclass
class TileResult:
    """Outputs and counts of one predicted tile."""

    class_path: Path
    confidence_path: Path
    n_pixels: int
    n_nodata: int
    class_counts: dict[str, int]


def predict_array(bundle: ModelBundle, x: np.ndarray, lonlat_deg: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Predict N samples.

    Args:
        bundle: the loaded model bundle.
        x: float32 (N, F) features in the bundle's order and the spec's stored units.
        lonlat_deg: float32 (N, 2), lon then lat, EPSG:4326 degrees.

    Returns:
        ``(class ids int64 (N,), probabilities float32 (N, C))``.
    """
    prob = predict_proba(bundle.model, bundle.normalizer.transform(x), lonlat_deg)
    return prob.argmax(1), prob


def predict_tile(bundle: ModelBundle, feature_cog: Path, out_dir: Path, tile_id: str
                 ) -> TileResult:
    """Write ``<tile_id>_class.tif`` (uint8, nodata 255, colormap, mode overviews) and
    ``<tile_id>_confidence.tif`` (uint8 0–100 = round(100 · max probability), nodata 255).

    Raises:
        RasterError: the feature COG is unreadable or lacks a band the bundle needs.
    """
    data, transform, crs, tags = read_feature_cog(feature_cog, bundle.features)
    f, h, w = data.shape
    x = data.reshape(f, -1).T
    valid = np.isfinite(x).all(axis=1)
    lon, lat = pixel_centres_lonlat(transform, h, w, crs)
    lonlat = np.stack([lon.ravel(), lat.ravel()], axis=1).astype(np.float32)
    cls = np.full(h * w, NODATA, dtype=np.uint8)
    conf = np.full(h * w, NODATA, dtype=np.uint8)
    c, p = predict_array(bundle, x[valid], lonlat[valid])
    cls[valid] = c.astype(np.uint8)
    conf[valid] = np.rint(p.max(axis=1) * 100).astype(np.uint8)
    common = {"model_hash": bundle.digest, "spec_hash": tags.get("spec_hash", ""),
              "spec": tags.get("spec", ""), "tile_id": tile_id, "features_file": feature_cog.name,
              "year": tags.get("year", "")}
    out_dir.mkdir(parents=True, exist_ok=True)
    cpath = write_cog(out_dir / f"{tile_id}_class.tif", cls.reshape(h, w), transform, crs, NODATA,
                      descriptions=[bundle.legend.level],
                      tags={**common, "legend": bundle.legend.to_json()},
                      colormap=bundle.legend.colormap(), resampling="mode")
    qpath = write_cog(out_dir / f"{tile_id}_confidence.tif", conf.reshape(h, w), transform, crs,
                      NODATA, descriptions=["confidence_pct"],
                      tags={**common, "units": "percent (max class probability x 100)"},
                      resampling="average")
    counts = np.bincount(cls[valid], minlength=len(bundle.legend))
    return TileResult(cpath, qpath, h * w, int((~valid).sum()),
                      {n: int(counts[i]) for i, n in enumerate(bundle.legend.names)})
