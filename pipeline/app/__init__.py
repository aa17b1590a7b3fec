"""The application, the top layer: the ``eulc`` CLI (one module per command group) and the demo."""
