"""OR-Tools PDLP (restarted PDHG on the CPU, the pip package ``ortools``) as a backend: the general first-order peer."""

from .backend import OrtoolsPdlpBackend, OrtoolsPdlpOptions

__all__ = ["OrtoolsPdlpBackend", "OrtoolsPdlpOptions"]
