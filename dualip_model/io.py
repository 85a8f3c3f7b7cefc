"""LP and MPS files in and out, through HiGHS's readers and writers (no hand-written parser).

A model read from a file has one entity set "columns" (labeled by column names), one variable "x" over
it with the file's bounds, one entity set "rows" and one constraint family "rows":
row_lower <= A x <= row_upper. Every column is then in a BOX block.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tempfile
import zlib

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .atomic import atomic_write
from .errors import ModelError
from .expressions import matmul
from .model import Model
from .flat_lp import block_rows
from .polytopes import EQUALITY_KINDS, BlockKind
from .sets import EdgeSet
from .standard_form import StandardForm, content_format


def read_model(path, name: str | None = None, detect_blocks: bool = True) -> Model:
    """Read a model file into a Model; its kind from its content (``file_kind``).

    An LP or MPS file (gzipped or not; LP or MPS from the extension, else from the text) goes through
    HiGHS's reader; a standard form saved by ``StandardForm.save`` (.npz or .safetensors, whatever its name)
    is loaded and checked (``StandardForm.load``) and rebuilt as a model (``model_from_standard_form``).
    With ``detect_blocks`` (the default) the model's solves turn rows that are positive sums over disjoint
    nonnegative columns into simplex blocks (``model.reduction``, see dualip_model/block_detection.py);
    results are in the file's terms either way.
    """
    import highspy

    from .backends.highs.backend import silent_highs

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelError(f"model file '{path}' does not exist")
    kind = file_kind(path)
    if kind == "standard form":
        return _with_block_detection(model_from_standard_form(StandardForm.load(path), name), detect_blocks)
    if kind is None:
        raise ModelError(f"model file '{path}' could not be read: its content is none of MPS or LP text, gzip, or a "
                         "saved standard form (.npz/.safetensors)")
    h = silent_highs()  # highspy.Highs() would print HiGHS's banner
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "read.log")  # HiGHS reports dropped entries only in its log
        h.setOptionValue("output_flag", True)
        h.setOptionValue("log_to_console", False)
        h.setOptionValue("log_file", log)
        readable = _gunzipped(path, tmp) if kind == "gzip" else path
        readable = _with_text_suffix(readable, tmp)
        status = h.readModel(readable)
        h.setOptionValue("log_file", "")
        h.setOptionValue("output_flag", False)
        with open(log, encoding="utf-8", errors="replace") as f:
            logged = [line.strip() for line in f if _DROPPED.search(line) or _FIXED_FORMAT in line]
        if status == highspy.HighsStatus.kError:
            raise ModelError(f"model file '{path}' could not be read by HiGHS (corrupt, truncated or unknown format)")
        fixed = any(_FIXED_FORMAT in line for line in logged)
        dropped = [line for line in logged if _FIXED_FORMAT not in line]
        # HiGHS's free reader appends an empty, zero-cost column for each BOUNDS name missing from COLUMNS; its fixed
        # reader drops such bounds, with a log line that does not name the column
        n = h.getNumCol()
        suspect = dropped if fixed else n and h.getCol(n - 1)[1::3] == (0.0, 0)  # getCol: status, cost, .., nonzeros
        if suspect and readable.lower().endswith(".mps"):
            column = _bound_on_undefined_column(readable, fixed)
            if column is not None:
                raise ModelError(f"model file '{path}': BOUNDS section names column '{column}', which has no entries "
                                 f"in COLUMNS (HiGHS would {'drop the bound' if fixed else 'add the column'})")
    if dropped:
        raise ModelError(f"model file '{path}' names undefined rows or columns or repeats entries, which HiGHS would "
                         f"drop: {dropped[0]}" + (f" (and {len(dropped) - 1} more)" if len(dropped) > 1 else ""))
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
    return _with_block_detection(model, detect_blocks)


def _with_block_detection(model: Model, detect_blocks: bool) -> Model:
    """``model`` whose solves detect simplex blocks among its rows (``detect_blocks``), else as it is."""
    if detect_blocks:
        from .block_detection import detect_blocks as reduction

        model.reduction = reduction
    return model


_DROPPED = re.compile(r"is not defined: ignored|ignored [1-9][0-9]* |duplicate .* ignored"
                      r"|not in [A-Z]+ +section: ignored")  # the last from the fixed-format reader
_FIXED_FORMAT = "switching to fixed format parser"  # HiGHS's free reader gave up on names with spaces


def _bound_on_undefined_column(path: str, fixed: bool) -> str | None:
    """First BOUNDS column name with no line in COLUMNS (fields split on whitespace, or fixed: columns 5-12, 15-22)."""
    columns, section = set(), b""
    with open(path, "rb") as f:
        for line in f:
            fields = line.split()
            if not fields or line.startswith(b"*"):
                continue
            if len(fields) == 1:  # a section header; every data line has two fields or more
                section = fields[0].upper()
            elif fixed:
                line = line.rstrip().ljust(24)  # as HiGHS's fixed reader, which compares the raw 8-character fields
                if section == b"COLUMNS" and line[14:22] != b"'MARKER'":
                    columns.add(line[4:12])
                elif section == b"BOUNDS" and line[14:22] not in columns:
                    return line[14:22].strip().decode(errors="replace")
            elif section == b"COLUMNS" and fields[1] != b"'MARKER'":
                columns.add(fields[0])
            elif section == b"BOUNDS" and fields[1] not in columns:  # else fields[1] is the column (no bound name)
                name = fields[2] if len(fields) > 2 else fields[1]  # 'FR X': HiGHS takes X for the bound name
                if name not in columns:
                    return name.decode(errors="replace")
    return None


def file_kind(path: str) -> str | None:
    """What the first bytes of a model file say it is: "standard form", "gzip", "text" or None (none of them)."""
    if content_format(path) is not None:
        return "standard form"
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if b"\x00" in head:
        return None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 3:  # (a character cut at the end of the 4 KiB is fine)
            return None
    return "text"


def _with_text_suffix(path: str, folder: str) -> str:
    """``path`` if it ends in .mps or .lp (HiGHS picks its reader from that), else a link in ``folder`` that does:
    .lp if the text opens like an LP file (an objective sense first), else .mps."""
    if path.lower().endswith((".mps", ".lp")):
        return path
    with open(path, "rb") as fh:
        words = [line.split(b"\\")[0].strip().lower() for line in fh.read(4096).splitlines()]
    first = next((w for w in words if w), b"")
    lp = first.split()[0].rstrip(b":") in _LP_SENSES if first else False
    link = os.path.join(folder, "model" + (".lp" if lp else ".mps"))
    try:
        os.symlink(os.path.abspath(path), link)
    except OSError:
        shutil.copyfile(path, link)
    return link


_LP_SENSES = {b"min", b"max", b"minimize", b"maximize", b"minimum", b"maximum", b"minimise", b"maximise"}


def model_from_standard_form(sf: StandardForm, name: str | None = None) -> Model:
    """The model a standard form describes: one variable per variable slot of its layout (labels 0..k-1, the
    file's bounds), one constraint per constraint slot (coupling rows as ``lower <= A x <= upper``, block
    slots as ``sum x <= r`` or ``== r`` over each block's columns) and the objective in the layout's sense;
    compiled, it gives the form back (up to the column order of its BOX blocks)."""
    lay = sf.layout
    where = f"standard form '{sf.name}'"
    ends = [s.start for s in lay.variables[1:]] + [sf.n_cols]
    if not lay.variables or lay.variables[0].start != 0 or any(s.stop != e for s, e in zip(lay.variables, ends)):
        raise ModelError(f"{where}: its layout's variables do not cover the {sf.n_cols} columns in order")
    position = np.arange(sf.n_cols) if lay.column_order is None else np.argsort(lay.column_order)
    A = sf.A[:, position].tocsc()  # columns in model order
    model = Model(name or sf.name)
    xs = [model.variable(s.name, over=model.entities(s.name, s.stop - s.start),
                         lower=lay.to_original(np.asarray(sf.col_lower))[s.start:s.stop],
                         upper=lay.to_original(np.asarray(sf.col_upper))[s.start:s.stop]) for s in lay.variables]
    c = lay.to_original(np.asarray(sf.c))
    objective = sum(((lay.sense * c[x.start:x.stop]) * x).sum() for x in xs) + lay.sense * sf.offset
    (model.maximize if lay.sense == -1 else model.minimize)(objective)

    def rows(matrix, slot):
        index = model.entities(f"{slot.name} rows", slot.stop - slot.start)
        return sum(matmul(matrix[:, x.start:x.stop], x, index) for x in xs)

    covered = {"rows": np.zeros(sf.n_rows, dtype=bool), "blocks": sf.block_kind == BlockKind.BOX}  # BOX: no row
    for slot in lay.constraints:
        covered[slot.kind][slot.start:slot.stop] = True
        if slot.kind == "rows":
            model.subject_to(rows(A[slot.start:slot.stop], slot).between(sf.row_lower[slot.start:slot.stop],
                                                                          sf.row_upper[slot.start:slot.stop]),
                             name=slot.name, block=False)
            continue
        ptr = np.asarray(sf.block_ptr[slot.start:slot.stop + 1], dtype=np.int64)
        kinds = sf.block_kind[slot.start:slot.stop]
        if (kinds == BlockKind.BOX).any():
            raise ModelError(f"{where}: constraint '{slot.name}' holds a BOX block (a block without a sum)")
        cols = np.arange(ptr[0], ptr[-1]) if lay.column_order is None else lay.column_order[ptr[0]:ptr[-1]]
        member = sp.csr_matrix((np.ones(cols.shape[0]), (np.repeat(np.arange(kinds.shape[0]), np.diff(ptr)), cols)),
                               shape=(kinds.shape[0], sf.n_cols))
        rhs = sf.block_rhs[slot.start:slot.stop]
        equal = np.isin(kinds, EQUALITY_KINDS)
        model.subject_to(rows(member, slot).between(np.where(equal, rhs, -np.inf), rhs), name=slot.name)
    for kind, mask in covered.items():
        if not mask.all():
            raise ModelError(f"{where}: its layout names no constraint for {kind} {int(np.argmin(mask))}")
    return model


def _gunzipped(path: str, folder: str) -> str:
    """Decompress with Python's gzip, which (unlike HiGHS's reader) refuses a truncated stream."""
    base = os.path.basename(path)
    target = os.path.join(folder, base[: -len(".gz")] if base.endswith(".gz") else base)
    try:
        with gzip.open(path, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (OSError, EOFError, zlib.error) as exc:
        raise ModelError(f"model file '{path}' could not be read by HiGHS (corrupt, truncated or unknown format: "
                         f"{exc})") from exc
    return target


def write_model(model_or_sf, path) -> None:
    """Write a model (compiled first) or a StandardForm as an LP or MPS file, format from the extension.

    Block sum constraints are written as ordinary rows after the coupling rows. A model's columns and rows
    are named after its labels (``x[u1,i3]``, ``budget[i3]``; bare labels when the model has one variable or
    one constraint family, as a model read from a file has); a StandardForm gets HiGHS's default names.
    The write is atomic (``atomic.atomic_write``).
    """
    import highspy

    from dualip_model.backends.highs import to_highs

    model = model_or_sf if isinstance(model_or_sf, Model) else None
    sf = model.compile() if model is not None else model_or_sf
    h, _ = to_highs(sf, names=None if model is None else _names(model, sf))
    if sf.layout.sense == -1:  # the standard form minimizes -f; write max f as the user stated it
        h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        h.changeColsCost(sf.n_cols, np.arange(sf.n_cols, dtype=np.int32), -np.asarray(sf.c))
        h.changeObjectiveOffset(-sf.offset)
    with atomic_write(path, "model file") as tmp:  # tmp keeps the suffix HiGHS reads the format from
        if h.writeModel(tmp) == highspy.HighsStatus.kError:
            raise ModelError(f"could not write model to '{path}'")


def _label_strings(index, count: int) -> np.ndarray:
    """One string per element of an entity set ("u1"), an edge set ("u1,i3") or a global row ("")."""
    if index is None:
        return np.full(count, "", dtype=object)
    if isinstance(index, EdgeSet):
        src = index.src_set.labels[index.src].astype(str)
        dst = index.dst_set.labels[index.dst].astype(str)
        return (src + "," + dst).to_numpy(dtype=object)
    return index.labels.astype(str).to_numpy(dtype=object)


def _names(model: Model, sf) -> tuple[list[str], list[str]] | None:
    """(column names, row names) in the standard form's order for to_highs, or None if they would collide."""
    def named(prefix: str, labels: np.ndarray, bare: bool) -> np.ndarray:
        if bare and all(isinstance(lab, str) and lab[:1].isalpha() for lab in labels):  # file names: X01, R09
            return labels
        return np.array([f"{prefix}[{lab}]" if lab else prefix for lab in labels], dtype=object)

    cols = np.empty(sf.n_cols, dtype=object)
    for slot in sf.layout.variables:
        var = model.variables[slot.name]
        cols[slot.start : slot.stop] = named(slot.name, _label_strings(var.index, var.size), len(model.variables) == 1)
    if sf.layout.column_order is not None:
        cols = cols[sf.layout.column_order]
    sum_blocks, block_row = block_rows(sf)
    rows = np.empty(sf.n_rows + sum_blocks.shape[0], dtype=object)
    for slot in sf.layout.constraints:
        con = model.constraints[slot.name]
        names = named(slot.name, _label_strings(con.index, slot.stop - slot.start), len(model.constraints) == 1)
        if slot.kind == "rows":
            rows[slot.start : slot.stop] = names
        else:
            target = block_row[slot.start : slot.stop]
            rows[target[target >= 0]] = names[target >= 0]
    cleaned = [pd.Series(a, dtype=object).str.replace(r"[^\w.\[\],()]", "_", regex=True) for a in (cols, rows)]
    if any(s.isna().any() or not s.is_unique for s in cleaned):
        return None
    return cleaned[0].tolist(), cleaned[1].tolist()
