"""lnemo: pure-functional JAX modules for Llama-Nemotron / Puzzle and offline ranker evaluation.

Subpackages are imported on demand (``import lnemo.models``); importing ``lnemo`` itself is cheap.
"""

__version__ = "0.1.0"
