"""Run an eulc openEO process graph locally with openeo-processes-dask, on a shipped stack.

The back-end is replaced by the stack, nothing else: ``load_collection`` returns the stack's
variables as the (t, bands, y, x) cube a back-end would (EPSG:3035 pixel-centre coordinates),
honouring the temporal extent and the bands asked for; every other process is
openeo-processes-dask's own implementation, parsed by openeo-pg-parser-networkx. The graph's
``save_result`` is cut off (the harness writes the file itself).

xarray's new combine defaults are switched on while a graph runs: openeo-processes-dask's
``merge_cubes`` calls ``combine_by_coords(compat="override")``, which xarray refuses with its
legacy ``coords="different"`` default (a cube of December with one of January–February).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from openeo_pg_parser_networkx import OpenEOProcessGraph, ProcessRegistry
from openeo_pg_parser_networkx.process_registry import Process
from openeo_processes_dask.process_implementations.core import process

from openeo_scripts.backends import Backend, Collection
from tiles.engine.stack import load_manifest, load_stack

STACK_VARIABLES = ("ndvi", "CLP", "VALID")
"""The Slovenia stack's variables on its 68 dates (its 13 bands have 5 dates only)."""

SLOVENIA = Backend(
    name="eolearn_slovenia",
    url="local",
    s2={"L1C": Collection("eolearn_slovenia", {"ndvi": "ndvi"}, ("CLP", "VALID"), cloud_cover=None, dn_scaled=False)},
)
"""A back-end whose one Sentinel-2 L1C collection is the shipped Slovenia stack (precomputed NDVI,
s2cloudless CLP in percent, eo-learn's validity mask)."""


def stack_cube(stack: str = "eolearn_slovenia") -> xr.DataArray:
    """The stack's variables as a (t, bands, y, x) float32 cube with EPSG:3035 pixel centres."""
    man, root = load_manifest(stack)
    st = load_stack(man, root, variables=set(STACK_VARIABLES))
    times = st.variables["ndvi"][0]
    assert all(np.array_equal(st.variables[n][0], times) for n in STACK_VARIABLES)
    t = st.window.transform
    cube = xr.DataArray(
        np.stack([st.values(n) for n in STACK_VARIABLES], axis=1),
        dims=("t", "bands", "y", "x"),
        coords={
            "t": times,
            "bands": list(STACK_VARIABLES),
            "y": t.f + t.e * (np.arange(st.window.height) + 0.5),
            "x": t.c + t.a * (np.arange(st.window.width) + 0.5),
        },
    )
    return cube.rio.write_crs(3035)


def _timestamp(x: Any) -> np.datetime64:
    ts = pd.Timestamp(str(getattr(x, "root", x)))
    return np.datetime64((ts.tz_convert(None) if ts.tzinfo else ts).to_datetime64())


def registry(cube: xr.DataArray) -> ProcessRegistry:
    """openeo-processes-dask's processes, with ``load_collection`` reading ``cube``."""
    reg = ProcessRegistry(wrap_funcs=[process])
    impls = importlib.import_module("openeo_processes_dask.process_implementations")
    specs = importlib.import_module("openeo_processes_dask.specs")
    for name, func in inspect.getmembers(impls, inspect.isfunction):
        reg[("predefined", name)] = Process(
            spec=getattr(specs, name, None), implementation=func, namespace="predefined"
        )

    def load_collection(id: str, spatial_extent: Any = None, temporal_extent: Any = None, bands: Any = None, **kw: Any):  # noqa: A002, ANN202
        c = cube
        if temporal_extent is not None:
            a, b = (_timestamp(x) for x in temporal_extent)
            c = c.sel(t=(c.t >= a) & (c.t < b))
        return c.sel(bands=list(bands)) if bands else c

    reg[("predefined", "load_collection")] = Process(
        spec=getattr(specs, "load_collection", None), implementation=load_collection, namespace="predefined"
    )
    return reg


def without_save(graph: dict[str, Any]) -> dict[str, Any]:
    """The flat process graph with its ``save_result`` node cut off (its input becomes the result)."""
    nodes = {k: dict(v) for k, v in graph.items()}
    (key,) = [k for k, v in nodes.items() if v["process_id"] == "save_result"]
    source = nodes.pop(key)["arguments"]["data"]["from_node"]
    nodes[source]["result"] = True
    return nodes


def execute(graph: dict[str, Any], cube: xr.DataArray) -> xr.DataArray:
    """Run a flat process graph on ``cube``; the result, computed: (bands, y, x) for a raster
    cube, (geometry, bands) for ``aggregate_spatial``'s vector cube."""
    with xr.set_options(use_new_combine_kwarg_defaults=True):
        out = OpenEOProcessGraph({"process_graph": graph}).to_callable(process_registry=registry(cube))()
        out = out.compute()
    return out.transpose("bands", "y", "x") if "y" in out.dims else out


def write_like_openeo(cube: xr.DataArray, dest: Path) -> None:
    """Write the result as an openEO back-end's GeoTIFF: float32, NaN nodata, EPSG:3035, no band names."""
    cube.astype("float32").rio.write_crs(3035).rio.write_nodata(np.nan).rio.to_raster(dest, driver="GTiff")
