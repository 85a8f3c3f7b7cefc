"""Exact reference backend: HiGHS (simplex, interior point or PDLP) through highspy."""

from .backend import HighsBackend, HighsOptions, to_highs

__all__ = ["HighsBackend", "HighsOptions", "to_highs"]
