"""Shared contracts, the bottom layer: errors, the feature spec and its digest, selections,
legends, the EEA grid and AOIs, LUCAS/EEA/bioregion readers, atomic I/O, hashing, the feature
COG format and its windowed reader. Imports nothing else of eulc (docs/architecture.md).
"""
