"""Block polytopes C_i: the per-block feasible sets that dual decomposition projects onto.

Every block i owns a contiguous range of columns and one kind:

- BOX:        C_i = {x : l <= x <= u}
- SIMPLEX_LE: C_i = {x : x >= 0, sum x <= r_i}
- SIMPLEX_EQ: C_i = {x : x >= 0, sum x == r_i}
- BOXCUT_LE:  C_i = {x : l <= x <= u, sum x <= r_i}
- BOXCUT_EQ:  C_i = {x : l <= x <= u, sum x == r_i}

The simplex kinds are the box-cut kinds with l = 0 and u >= r_i (then u never binds).
"""

from __future__ import annotations

import enum


class BlockKind(enum.IntEnum):
    """Kind code of a block polytope, stored as int8 in StandardForm.block_kind."""

    BOX = 0
    SIMPLEX_LE = 1
    SIMPLEX_EQ = 2
    BOXCUT_LE = 3
    BOXCUT_EQ = 4

    @property
    def has_sum(self) -> bool:
        """True if the block carries a sum constraint (sum x <= r or == r)."""
        return self is not BlockKind.BOX

    @property
    def is_equality(self) -> bool:
        return self in EQUALITY_KINDS


EQUALITY_KINDS = (BlockKind.SIMPLEX_EQ, BlockKind.BOXCUT_EQ)  # blocks whose sum constraint is sum x == r
