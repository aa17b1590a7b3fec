"""Tiles: the local/STAC feature engine (``tiles.engine``) and map production (``tiles.mapping``)."""
