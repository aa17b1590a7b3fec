"""eulc pipeline: config, feature spec, legends, training tables, agreement and the CLI.

This package imports neither ``ee`` nor ``torch`` at import time (DESIGN.md §1).
"""

__version__ = "0.1.0"
