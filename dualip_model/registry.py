"""Backends by name: the built-ins, ones registered at run time, and third-party entry points.

Listing names imports nothing heavy; a backend's module (torch, highspy, ...) is imported on first use.
Third-party packages add backends under the entry point group ``dualip_model.backends``, each pointing
at a backend class (instantiated without arguments) or instance.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from .backend import Backend
from .errors import BackendNotFoundError

ENTRY_POINT_GROUP = "dualip_model.backends"

_BUILTIN = {
    "highs": "dualip_model.backends.highs:HighsBackend",
    "dualip": "dualip_model.backends.dualip:DualipBackend",
    "cupdlpx": "dualip_model.backends.cupdlpx:CupdlpxBackend",  # needs the cupdlpx package and a GPU
    "ortools-pdlp": "dualip_model.backends.ortools_pdlp:OrtoolsPdlpBackend",  # needs the ortools package
}
_registered: dict[str, object] = {}  # name -> "module:attr" or a Backend class/instance
_instances: dict[str, Backend] = {}


def register(name: str, backend) -> None:
    """Register a backend class, instance or "module:attr" path under ``name`` (replacing any other)."""
    _registered[name] = backend
    _instances.pop(name, None)


def _sources() -> dict[str, object]:
    found = dict(_BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    found.update(_registered)
    return found


def available() -> list[str]:
    """Names of every known backend (whether or not its dependencies import)."""
    return sorted(_sources())


def get(name: str) -> Backend:
    """The backend registered as ``name``, imported and instantiated on first use."""
    if name in _instances:
        return _instances[name]
    sources = _sources()
    if name not in sources:
        raise BackendNotFoundError(f"no backend named {name!r}; available: {', '.join(available())}")
    source = sources[name]
    if isinstance(source, str):
        module, _, attr = source.partition(":")
        source = getattr(importlib.import_module(module), attr)
    elif hasattr(source, "load") and hasattr(source, "group"):  # an entry point
        source = source.load()
    backend = source() if isinstance(source, type) else source
    if not isinstance(backend, Backend):
        raise BackendNotFoundError(f"backend {name!r} does not implement name/capabilities/Options/solve")
    _instances[name] = backend
    return backend
