"""Solver backends shipped with dualip_model, importable as ``dualip_model.backends.<name>``."""
