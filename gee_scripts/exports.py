"""Unstarted Earth Engine export tasks: point sampling (tables) and per-tile feature rasters.

Both use :func:`gee_scripts.images.export_image` (features × scale, rounded, int16) so the
values at a point in a training table and in a tile raster are the same numbers.

- **Tables**: ``sampleRegions`` at 10 m in EPSG:3035 on a shard of points (≤ ``shard_size``
  per task, shards inside one EEA 100 km cell), ``Export.table`` to Drive, Cloud Storage or
  an asset, CSV with ``system:index`` and ``.geo``.
- **Tiles**: ``Export.image`` of an EEA grid tile with ``crs="EPSG:3035"`` and a
  ``crsTransform`` from :class:`pipeline.core.grid.TileId` (never ``scale``), ``dimensions`` from the
  tile, a Cloud-Optimized GeoTIFF with nodata −32768. GeoTIFF exports carry no band names, so
  a ``<prefix>.bands.json`` sidecar is written beside the task list and read by the tile reader.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import ee
import geopandas as gpd

from gee_scripts.images import export_image
from pipeline.core.errors import EulcError
from pipeline.core.grid import TileId
from pipeline.core.lucas import point_properties
from pipeline.core.spec import FeatureSpec

NODATA_INT16 = -32768
SAMPLE_SCALE_M = 10


@dataclass(frozen=True)
class Destination:
    """Where exports go: ``drive`` (folder), ``gcs`` (bucket) or ``asset`` (asset folder)."""

    kind: Literal["drive", "gcs", "asset"] = "drive"
    folder: str = "eulc"
    bucket: str | None = None
    asset_root: str | None = None

    def check(self) -> None:
        """Raise :class:`EulcError` if the destination lacks its bucket or asset root."""
        if self.kind == "gcs" and not self.bucket:
            raise EulcError("a Cloud Storage destination needs a bucket", "Pass `bucket` NAME")
        if self.kind == "asset" and not self.asset_root:
            raise EulcError(
                "an asset destination needs an asset folder", "Pass `asset_root` projects/PROJECT/assets/FOLDER"
            )

    def uri(self, prefix: str, ext: str) -> str:
        """Where the output will be, for the job table."""
        if self.kind == "gcs":
            return f"gs://{self.bucket}/{self.folder}/{prefix}.{ext}"
        if self.kind == "asset":
            return f"{self.asset_root}/{prefix}"
        return f"drive://{self.folder}/{prefix}.{ext}"


def region_of(tile: TileId) -> ee.Geometry:
    """The tile rectangle in EPSG:3035 (planar), used for ``filterBounds``."""
    return ee.Geometry.Rectangle(list(tile.bounds), "EPSG:3035", False)


def points_collection(points: gpd.GeoDataFrame) -> ee.FeatureCollection:
    """LUCAS points (EPSG:4326, lon/lat) as an ``ee.FeatureCollection`` with id and labels."""
    feats = []
    for row in points.itertuples():
        geometry = ee.Geometry.Point([float(row.geometry.x), float(row.geometry.y)])
        feats.append(ee.Feature(geometry, point_properties(row)))
    return ee.FeatureCollection(feats)


def table_task(
    spec: FeatureSpec, year: int, key: str, points: gpd.GeoDataFrame, dest: Destination, cell: TileId
) -> ee.batch.Task:
    """An unstarted ``Export.table`` of ``sampleRegions`` on one shard of points."""
    img = export_image(spec, year, region_of(cell))
    table = img.sampleRegions(
        collection=points_collection(points),
        properties=["POINT_ID", "LC1", "LU1"],
        scale=SAMPLE_SCALE_M,
        projection="EPSG:3035",
        tileScale=4,
        geometries=True,
    )
    desc = f"eulc_{spec.name}_{year}_{key}"[:100]
    prefix = f"{spec.name}_{year}_{key}"
    if dest.kind == "gcs":
        return ee.batch.Export.table.toCloudStorage(
            collection=table,
            description=desc,
            bucket=dest.bucket,
            fileNamePrefix=f"{dest.folder}/{prefix}",
            fileFormat="CSV",
        )
    if dest.kind == "asset":
        return ee.batch.Export.table.toAsset(collection=table, description=desc, assetId=f"{dest.asset_root}/{prefix}")
    return ee.batch.Export.table.toDrive(
        collection=table, description=desc, folder=dest.folder, fileNamePrefix=prefix, fileFormat="CSV"
    )


def tile_task(spec: FeatureSpec, year: int, tile: TileId, dest: Destination) -> ee.batch.Task:
    """An unstarted ``Export.image`` of one EEA tile on the 10 m grid (COG, int16, nodata −32768)."""
    w = tile.window()
    t = w.transform
    img = export_image(spec, year, region_of(tile))
    if spec.export_dtype == "int16":
        img = img.unmask(NODATA_INT16, False)
    desc = f"eulc_{spec.name}_{year}_{tile}"[:100]
    prefix = f"{spec.name}_{year}_{tile}"
    common: dict[str, Any] = {
        "image": img,
        "description": desc,
        "crs": w.grid.crs,
        "crsTransform": [t.a, t.b, t.c, t.d, t.e, t.f],
        "dimensions": f"{w.width}x{w.height}",
        "maxPixels": 10**13,
    }
    if dest.kind == "asset":
        return ee.batch.Export.image.toAsset(assetId=f"{dest.asset_root}/{prefix}", **common)
    fmt: dict[str, Any] = {"fileFormat": "GeoTIFF", "formatOptions": {"cloudOptimized": True, "noData": NODATA_INT16}}
    if dest.kind == "gcs":
        return ee.batch.Export.image.toCloudStorage(
            bucket=dest.bucket, fileNamePrefix=f"{dest.folder}/{prefix}", **common, **fmt
        )
    return ee.batch.Export.image.toDrive(folder=dest.folder, fileNamePrefix=prefix, **common, **fmt)


def task_graph(task: ee.batch.Task) -> dict[str, Any]:
    """The task's full configuration as JSON: the expression graph (Cloud API encoding) and
    every export parameter. This is what Earth Engine would receive.
    """
    cfg = dict(task.config or {})
    expr = cfg.pop("expression")
    return {
        "task_type": str(task.task_type),
        "config": json.loads(json.dumps(cfg, default=str)),
        "expression": ee.serializer.encode(expr, for_cloud_api=True),
    }


def graph_hash(graph: dict[str, Any]) -> str:
    """SHA-256 (first 16 hex) of a task graph: the job table's params hash."""
    return hashlib.sha256(json.dumps(graph, sort_keys=True).encode()).hexdigest()[:16]
