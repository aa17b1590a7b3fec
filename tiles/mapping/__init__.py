"""Mapping: fused tile inference, class/confidence COGs, STAC items, the manifest and the dask
tile runner. Above ``model`` and the engines.
"""
