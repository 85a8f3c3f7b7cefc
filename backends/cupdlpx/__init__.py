"""cuPDLPx (GPU restarted Halpern PDHG, the pip package ``cupdlpx``) as a backend: the general GPU LP peer."""

from .backend import CupdlpxBackend, CupdlpxOptions

__all__ = ["CupdlpxBackend", "CupdlpxOptions"]
