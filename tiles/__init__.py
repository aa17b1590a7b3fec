"""Tiles: the EEA reference grid, the local feature engine, COG writing and tile inference."""
