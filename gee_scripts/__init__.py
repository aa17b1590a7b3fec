"""Google Earth Engine feature engine: the only package that imports ``ee``.

Builders that turn a feature spec into ``ee.Image`` graphs, sampling and export tasks come
with the Earth Engine issue (#3); install with ``pip install -e ".[gee]"``.
"""
