"""The local/STAC feature engine: the feature spec on Sentinel stacks (files or STAC) with
xarray/dask, written as feature COGs. A peer of ``gee_scripts``; neither imports the other.
"""
