"""The bottom layer: the one exception type, the output folder's names, pinned numerics, provenance and
statistics. Imports nothing else of the project (and no torch at import time)."""
