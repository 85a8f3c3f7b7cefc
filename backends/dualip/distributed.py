"""A sharded dualip solve on torch.distributed: one process per rank, launched by torchrun.

    rank k: v_k = -(c_k + A_k^T y) / gamma -> x_k = proj_{C_k}(v_k) -> all-reduce sum_k A_k x_k (m numbers) -> y

Each rank loads only its shard of a saved standard form (``dualip_model.shards``: contiguous blocks of
even work), the duals and the step state are replicated and computed alike on every rank from the reduced
row sums, and the certificate's sums over columns are all-reduced too: the ranks run the single-process
method on the whole problem, with sums taken in another order. NCCL is used when CUDA is available, gloo
otherwise. A rank that dies makes its peers raise DistributedError at their next collective; the job
resumes from its last sharded checkpoint (a directory) on any number of ranks.

    torchrun --nproc-per-node 4 -m dualip_model solve-sharded model.npz --out x/ --option checkpoint=ckpt
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib.util
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from dualip_model.atomic import write_table
from dualip_model.backend import RawResult
from dualip_model.errors import DistributedError, ModelError
from dualip_model.shards import Shard, load_shard
from dualip_model.standard_form import Layout
from dualip_model.status import Status, relative_gap

from . import checkpoint
from .backend import solve_standard_form
from .checkpoint import ShardedStore
from .comm import Comm, ProcessGroupComm
from .options import DualipOptions


def init_process_group(backend: str | None = None, timeout: float = 600.0) -> ProcessGroupComm:
    """Join the job torchrun started (env:// rendezvous) and return its communicator.

    ``backend``: "nccl" or "gloo"; None picks nccl when CUDA is available, else gloo. Under NCCL each rank
    uses the GPU ``LOCAL_RANK``. ``timeout``: seconds a collective may wait for a peer before failing.
    """
    import torch.distributed as dist

    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed")
    if not dist.is_initialized():
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ModelError(f"no process group and no torchrun environment ({', '.join(missing)} unset): "
                             "launch with 'torchrun --nproc-per-node N ...'")
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend not in ("nccl", "gloo"):
            raise ModelError(f"distributed backend {backend!r}: use 'nccl' or 'gloo'")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    on_gpu = dist.get_backend() == "nccl"
    return ProcessGroupComm(device=torch.device("cuda", torch.cuda.current_device()) if on_gpu else "cpu")


@dataclass
class ShardResult:
    """One rank's answer: the whole problem's status, objective, bound and row duals, this rank's primal.

    ``x[j]`` is the value of model column ``columns[j]`` (the user's variable order, as ``Result.x`` flattens
    it); ``block_dual`` is indexed by this rank's blocks. Objective and bound are in the model's sense.
    """

    status: Status
    objective: float
    bound: float  # a lower bound when minimizing, an upper bound when maximizing
    gap: float  # relative_gap in minimization terms, as Result.gap
    x: np.ndarray | None
    columns: np.ndarray
    row_dual: np.ndarray | None
    block_dual: np.ndarray | None
    rank: int
    world: int
    block_start: int
    block_stop: int
    iterations: int
    solve_time: float
    guarantees: tuple[str, ...]
    message: str
    layout: Layout  # the whole problem's constraint slots: rows of row_dual by constraint family
    history: list = field(default_factory=list)
    raw: RawResult | None = field(default=None, repr=False)  # in standard-form terms (a warm start reads it)

    def to_frame(self) -> pd.DataFrame:
        """This rank's primal as a table: 'column' (model column index) and 'value'."""
        values = self.x if self.x is not None else np.full(self.columns.shape[0], np.nan)
        return pd.DataFrame({"column": self.columns, "value": values})

    def save(self, directory) -> str:
        """Write this rank's primal to ``directory``/x-RANK-of-WORLD.parquet (or .csv without pyarrow), atomically."""
        os.makedirs(directory, exist_ok=True)
        stem = os.path.join(os.fspath(directory), f"x-{self.rank:05d}-of-{self.world:05d}")
        path = stem + (".parquet" if importlib.util.find_spec("pyarrow") is not None else ".csv")
        write_table(self.to_frame(), path, f"rank {self.rank}'s primal")
        return path


def solve_sharded(path, options: DualipOptions | None = None, comm: Comm | None = None, **settings) -> ShardResult:
    """Solve the standard form saved at ``path`` (StandardForm.save) as this rank's share of a torchrun job.

    Every rank of the job calls this with the same path and options. ``comm`` defaults to the torchrun
    process group (joined on first use); ``settings`` replace fields of ``options`` (DualipOptions).
    ``options.checkpoint`` / ``options.resume`` name a checkpoint directory, resumable on any number of ranks.
    """
    options = options if options is not None else DualipOptions()
    if settings:
        try:
            options = dataclasses.replace(options, **settings)
        except TypeError as exc:
            raise ModelError(f"solve_sharded: {exc}") from None
    comm = comm if comm is not None else init_process_group()
    if isinstance(comm, ProcessGroupComm) and comm.device.type != torch.device(options.device).type:
        raise ModelError(f"DualipOptions.device is {options.device!r} but the process group reduces "
                         f"{comm.device.type} tensors ({'nccl' if comm.device.type == 'cuda' else 'gloo'})")
    shard = load_shard(path, comm.rank, comm.world)
    _agree(shard, options, comm, path)
    raw = solve_standard_form(shard.sf, options, comm, ShardedStore(shard, comm))
    return _shard_result(raw, shard, comm)


def _agree(shard: Shard, options: DualipOptions, comm: Comm, path) -> None:
    """Every rank must solve the same problem (same sizes) with the same settings, or the collectives would not pair.

    Settings are compared by a 48-bit hash of the options that steer the iteration (limits and schedule).
    """
    steering = {k: getattr(options, k) for k in checkpoint.TRAJECTORY_OPTIONS + ("max_iter", "time_limit", "device")}
    digest = hashlib.blake2b(repr(sorted(steering.items())).encode(), digest_size=6).digest()
    mine = np.array([shard.n_cols_total, shard.n_blocks_total, shard.nnz_total, shard.sf.n_rows,
                     int.from_bytes(digest, "little")], dtype=np.float64)
    same = comm.max_np(mine) == -comm.max_np(-mine)
    if not same[:4].all():
        raise DistributedError(f"rank {comm.rank}: the ranks read standard forms of different sizes "
                               f"(this one read '{path}'); give every rank the same file")
    if not same[4]:
        raise DistributedError(f"rank {comm.rank}: the ranks were given different options ({steering}); give "
                               "every rank the same")


def _shard_result(raw: RawResult, shard: Shard, comm: Comm) -> ShardResult:
    sense = shard.layout.sense  # maximization is undone here, as in Result
    return ShardResult(
        status=raw.status, objective=sense * raw.objective, bound=sense * raw.bound,
        gap=relative_gap(raw.objective, raw.bound), x=raw.x, columns=shard.columns,
        row_dual=None if raw.row_dual is None else sense * raw.row_dual,
        block_dual=None if raw.block_dual is None else sense * raw.block_dual, rank=comm.rank, world=comm.world,
        block_start=shard.block_start, block_stop=shard.block_stop, iterations=raw.iterations,
        solve_time=raw.solve_time, guarantees=raw.guarantees, message=raw.message, layout=shard.layout,
        history=raw.history, raw=raw)
