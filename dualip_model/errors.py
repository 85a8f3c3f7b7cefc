"""Exceptions raised by dualip_model; every message names the variable, constraint, set or file at fault."""


class ModelError(ValueError):
    """Invalid model input (bad data, bad shapes, unknown labels, ...); nothing is solved."""


class CapabilityError(RuntimeError):
    """A backend was asked for something it does not declare (e.g. warm start, a block kind)."""


class BackendNotFoundError(LookupError):
    """No backend is registered under the requested name."""


class DistributedError(RuntimeError):
    """A sharded solve lost a rank or could not agree (a peer died, timed out or ran other options)."""
