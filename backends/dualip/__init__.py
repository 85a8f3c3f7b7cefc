"""The `dualip` backend: DuaLip-style ridge-regularized dual decomposition in PyTorch (CPU and CUDA)."""

from .backend import DualipBackend, memory_report
from .memory import MemoryReport
from .options import DualipOptions

__all__ = ["DualipBackend", "DualipOptions", "MemoryReport", "memory_report"]
