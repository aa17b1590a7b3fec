"""The openEO engine: process graphs of a feature spec for the Copernicus Data Space Ecosystem.

The only package that imports ``openeo`` (the ``[openeo]`` extra); see :mod:`openeo_scripts.graphs`.
"""
