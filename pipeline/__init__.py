"""eulc's pipeline package: shared contracts (``core``), the training table (``table``),
assessment (``assess``) and the application (``app``: CLI and demo).

This package imports neither ``ee`` nor ``torch`` at import time (DESIGN.md §1).
"""

__version__ = "0.1.0"
