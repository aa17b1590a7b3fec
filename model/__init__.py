"""BRIDGE-LC (Ghassemi et al. 2025, arXiv 2504.12368), its training and the model bundle.

torch is imported by the submodules only; ``import model`` stays light.
"""
