"""LP and MPS files in and out, through HiGHS's readers and writers (no hand-written parser).

A model read from a file has one entity set "columns" (labeled by column names), one variable "x" over
it with the file's bounds, one entity set "rows" and one constraint family "rows":
row_lower <= A x <= row_upper. Every column is then in a BOX block.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp

from .errors import ModelError
from .expressions import matmul
from .model import Model


def read_model(path, name: str | None = None) -> Model:
    """Read an LP or MPS file (format from the extension, .gz allowed) into a Model."""
    import highspy

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelError(f"model file '{path}' does not exist")
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    if h.readModel(path) == highspy.HighsStatus.kError:
        raise ModelError(f"model file '{path}' could not be read by HiGHS (corrupt, truncated or unknown format)")
    lp = h.getLp()
    n, m = lp.num_col_, lp.num_row_
    if n == 0:
        raise ModelError(f"model file '{path}' has no columns")
    integrality = np.asarray(lp.integrality_)
    if integrality.size and (integrality != 0).any():
        raise ModelError(f"model file '{path}' has integer columns; only LPs are supported")
    model = Model(name or os.path.basename(path).split(".")[0])
    col_names = list(lp.col_names_)
    cols = model.entities("columns", col_names if len(col_names) == n else n)
    x = model.variable("x", over=cols, lower=np.asarray(lp.col_lower_), upper=np.asarray(lp.col_upper_))
    cost = np.asarray(lp.col_cost_)
    objective = (cost * x).sum() + float(lp.offset_)
    if lp.sense_ == highspy.ObjSense.kMaximize:
        model.maximize(objective)
    else:
        model.minimize(objective)
    if m:
        row_names = list(lp.row_names_)
        rows = model.entities("rows", row_names if len(row_names) == m else m)
        a = lp.a_matrix_
        start, index, value = np.asarray(a.start_), np.asarray(a.index_), np.asarray(a.value_)
        if a.format_ == highspy.MatrixFormat.kColwise:
            matrix = sp.csc_matrix((value, index, start), shape=(m, n))
        else:
            matrix = sp.csr_matrix((value, index, start), shape=(m, n))
        model.subject_to(matmul(matrix, x, rows).between(np.asarray(lp.row_lower_), np.asarray(lp.row_upper_)),
                         name="rows", block=False)
    return model


def write_model(model_or_sf, path) -> None:
    """Write a model (compiled first) or a StandardForm as an LP or MPS file, format from the extension.

    Block sum constraints are written as ordinary rows after the coupling rows.
    """
    import highspy

    from dualip_model.backends.highs import to_highs

    sf = model_or_sf.compile() if isinstance(model_or_sf, Model) else model_or_sf
    h, _ = to_highs(sf)
    if sf.layout.sense == -1:  # the standard form minimizes -f; write max f as the user stated it
        h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        h.changeColsCost(sf.n_cols, np.arange(sf.n_cols, dtype=np.int32), -np.asarray(sf.c))
        h.changeObjectiveOffset(-sf.offset)
    if h.writeModel(os.fspath(path)) == highspy.HighsStatus.kError:
        raise ModelError(f"could not write model to '{path}'")
