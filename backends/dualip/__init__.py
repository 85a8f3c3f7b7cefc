"""The `dualip` backend: DuaLip-style ridge-regularized dual decomposition in PyTorch (CPU and CUDA)."""

from .backend import DualipBackend
from .options import DualipOptions

__all__ = ["DualipBackend", "DualipOptions"]
