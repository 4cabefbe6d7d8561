"""lineage: model fingerprinting and distillation detection.

Heavy dependencies (torch, transformers, faiss) are imported where they are used, never here.
"""

from lineage.errors import LineageError

__version__ = "0.1.0"
__all__ = ["LineageError", "__version__"]
