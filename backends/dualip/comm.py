"""Collectives of a sharded solve: sum_k (partial result of rank k), the identity in one process.

A rank owns the columns of a contiguous range of blocks, so every quantity summed over columns (A x, c^T x,
block values, row norms) is a local partial sum followed by one all-reduce, and everything indexed by rows
(the duals, the momentum state, the step) is replicated: each rank computes it from the same reduced
numbers. ``LOCAL`` is the single-process communicator (no communication at all); ``ProcessGroupComm``
wraps a torch.distributed process group (gloo on CPU tensors, NCCL on CUDA tensors).
"""

from __future__ import annotations

import numpy as np
import torch

from dualip_model.errors import DistributedError


class Comm:
    """One process: every collective returns its input."""

    rank = 0
    world = 1

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """sum over ranks of t (in place where it communicates)."""
        return t

    def max(self, t: torch.Tensor) -> torch.Tensor:
        """elementwise max over ranks of t."""
        return t

    def sum_np(self, a) -> np.ndarray:
        """sum over ranks of a float64 host array (or scalar); returns a new array."""
        return np.array(a, dtype=np.float64)

    def max_np(self, a) -> np.ndarray:
        return np.array(a, dtype=np.float64)

    def all_gather_np(self, a) -> list[np.ndarray]:
        """[a of rank 0, a of rank 1, ...] for a 1-d host array of the same length on every rank."""
        return [np.array(a)]

    def barrier(self) -> None:
        return None


LOCAL = Comm()


class ProcessGroupComm(Comm):
    """torch.distributed collectives on ``group``; a failed collective raises DistributedError naming the rank.

    Host arrays travel on ``device`` (CUDA for NCCL, which reduces GPU tensors only; the CPU for gloo).
    """

    def __init__(self, group=None, device: torch.device | str = "cpu"):
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise DistributedError("ProcessGroupComm needs an initialized torch.distributed process group "
                                   "(launch with torchrun, or call dualip_model.distributed.init_process_group)")
        self._dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        self.device = torch.device(device)

    def _reduce(self, t: torch.Tensor, op) -> torch.Tensor:
        try:
            self._dist.all_reduce(t, op=op, group=self.group)
        except (RuntimeError, ValueError) as exc:  # gloo: "Connection closed by peer", timeouts; NCCL errors
            raise DistributedError(f"rank {self.rank} of {self.world}: an all-reduce failed, a peer rank has "
                                   f"probably died or timed out ({type(exc).__name__}: {exc})") from exc
        return t

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return self._reduce(t, self._dist.ReduceOp.SUM)

    def max(self, t: torch.Tensor) -> torch.Tensor:
        return self._reduce(t, self._dist.ReduceOp.MAX)

    def _np(self, a, op) -> np.ndarray:
        t = torch.as_tensor(np.array(a, dtype=np.float64), device=self.device)
        return self._reduce(t, op).cpu().numpy()

    def sum_np(self, a) -> np.ndarray:
        return self._np(a, self._dist.ReduceOp.SUM)

    def max_np(self, a) -> np.ndarray:
        return self._np(a, self._dist.ReduceOp.MAX)

    def all_gather_np(self, a) -> list[np.ndarray]:
        a = np.asarray(a)
        t = torch.as_tensor(a.copy(), device=self.device)
        out = [torch.empty_like(t) for _ in range(self.world)]
        try:
            self._dist.all_gather(out, t, group=self.group)
        except (RuntimeError, ValueError) as exc:
            raise DistributedError(f"rank {self.rank} of {self.world}: an all-gather failed, a peer rank has "
                                   f"probably died or timed out ({type(exc).__name__}: {exc})") from exc
        return [o.cpu().numpy() for o in out]

    def barrier(self) -> None:
        self.sum(torch.zeros(1, device=self.device))  # an all-reduce: same failure handling as the rest
