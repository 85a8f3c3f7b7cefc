"""dualip_model: a columnar modeling language for huge block-structured LPs with pluggable backends.

    min c^T x  s.t.  A x <= b (coupling rows),  x_i in C_i (simplex / box block polytopes)
"""

import logging

from . import registry
from .backend import Backend, Capability, RawResult
from .compare import Comparison, compare
from .constraints import Constraint
from .errors import BackendNotFoundError, CapabilityError, DistributedError, ModelError
from .expressions import LinearExpression, Relation, matmul
from .io import read_model, write_model
from .model import Model, NoObjectiveWarning
from .plotting import plot_history
from .polytopes import BlockKind
from .progress import Progress, chain_callbacks
from .result import Result
from .sets import EdgeSet, EntitySet
from .standard_form import Layout, Slot, StandardForm
from .status import Status, relative_gap
from .tables import read_table, write_parquet
from .variables import Variable

logging.getLogger("dualip_model").addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "Backend", "BackendNotFoundError", "BlockKind", "Capability", "CapabilityError", "Comparison", "Constraint",
    "DistributedError", "EdgeSet", "EntitySet", "Layout", "LinearExpression", "Model", "ModelError",
    "NoObjectiveWarning", "Progress", "RawResult", "Relation", "Result", "Slot", "StandardForm", "Status",
    "Variable", "chain_callbacks", "compare", "matmul", "plot_history", "read_model", "read_table", "registry",
    "relative_gap", "write_model", "write_parquet",
]
