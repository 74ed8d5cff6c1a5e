"""Distributed helpers: one code path for a single process and for `torchrun --nproc_per_node P`.

`init()` joins the process group that torchrun describes in the environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT): gloo for CPU work, plus NCCL for CUDA tensors when the run uses
CUDA (backend "cpu:gloo,cuda:nccl", so numpy reductions and object broadcasts stay on the CPU).
Without those variables nothing is initialised and every helper is the single-process identity:
rank 0 of 1, `shard` returns everything, reductions return their input.

Exactness: `all_reduce_sum` sums float64 arrays; `gather_rows` returns rows ordered by their global
sample index, so results do not depend on how the indices were split.
"""

from __future__ import annotations

import datetime as _dt
import os
from contextlib import contextmanager
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as tdist

TIMEOUT_ENV = "VLTBENCH_DIST_TIMEOUT_S"  # seconds a rank waits in a collective (rank 0 may work alone meanwhile)
DEFAULT_TIMEOUT_S = 2 * 3600


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """True when a launcher (torchrun, submitit) described a process group in the environment."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def init(device: torch.device | str | None = None) -> bool:
    """Join the launcher's process group once (idempotent). Returns True when distributed.

    Non-main ranks are made quiet (no progress bars or log lines): rank 0 logs for everyone."""
    if is_initialized():
        return True
    if not launched():
        return False
    use_cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank())
    timeout = _dt.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    tdist.init_process_group(backend="cpu:gloo,cuda:nccl" if use_cuda else "gloo", timeout=timeout)
    if not is_main():
        from . import progress
        progress.set_quiet(True)
    return True


def is_initialized() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def rank() -> int:
    return tdist.get_rank() if is_initialized() else int(os.environ.get("RANK", "0")) if launched() else 0


def world_size() -> int:
    return tdist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def prefix() -> str:
    """'rank R/W: ' under a launcher with more than one process, else ''; for error messages."""
    w = world_size() if is_initialized() else env_world_size() if launched() else 1
    return f"rank {rank()}/{w}: " if w > 1 else ""


def barrier() -> None:
    if is_initialized():
        tdist.barrier()


def destroy() -> None:
    if is_initialized():
        tdist.destroy_process_group()


@contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. to fill a cache), then the others run it (and hit the cache)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


# ---- sharding ------------------------------------------------------------------------------------

def shard_bounds(n: int, block: int = 1, r: int | None = None, w: int | None = None) -> tuple[int, int]:
    """[start, stop) of rank r's contiguous share of n items, split in whole blocks of `block` items.

    The ceil(n / block) blocks are dealt contiguously, the first (blocks mod w) ranks taking one more:
    shares are disjoint, cover 0..n-1 exactly once (a remainder is assigned, never dropped or
    duplicated), and with block = batch size each rank's batches are the single-process batches."""
    r = rank() if r is None else r
    w = world_size() if w is None else w
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    nb = -(-n // block)
    base, extra = divmod(nb, w)
    b0 = r * base + min(r, extra)
    b1 = b0 + base + (1 if r < extra else 0)
    return min(n, b0 * block), min(n, b1 * block)


def shard(indices: Sequence | np.ndarray | torch.Tensor, block: int = 1):
    """This rank's contiguous share of `indices` (same type), see shard_bounds."""
    start, stop = shard_bounds(len(indices), block)
    return indices[start:stop]


# ---- collectives ---------------------------------------------------------------------------------

def all_reduce_sum(array: np.ndarray) -> np.ndarray:
    """Sum a float64 array over ranks (every rank gets the sum). The identity in one process."""
    a = np.asarray(array, dtype=np.float64)
    if not is_initialized():
        return a.copy()
    t = torch.from_numpy(np.ascontiguousarray(a).copy())
    tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t.numpy()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank src's (small, picklable) object on every rank."""
    if not is_initialized():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list:
    if not is_initialized():
        return [obj]
    out = [None] * world_size()
    tdist.all_gather_object(out, obj)
    return out


def gather_rows(rows: np.ndarray | None, ids: np.ndarray | torch.Tensor | Sequence[int], dst: int | None = 0,
                ) -> np.ndarray | None:
    """Rows of a variable-length per-rank array, concatenated over ranks and ordered by global index.

    rows: (n_r, ...) on this rank (None or 0 rows when the rank has none); ids: the n_r global sample
    indices of those rows. Returns the (sum n_r, ...) array sorted by index on `dst` (None on the
    others), or on every rank when dst is None; None when no rank has a row. Duplicated indices are
    an error (a sharding bug)."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if rows is not None:
        rows = np.asarray(rows)
        if len(rows) != len(ids):
            raise ValueError(f"gather_rows: {len(rows)} rows but {len(ids)} indices")
    if not is_initialized():
        order = _check_order(ids)
        return rows[order] if rows is not None else None
    meta = all_gather_object(None if rows is None or len(rows) == 0 else (rows.shape[1:], rows.dtype.str))
    known = [m for m in meta if m is not None]
    if not known:  # no rank has any row
        return None
    trail, dtype = known[0][0], np.dtype(known[0][1])
    if any(m != known[0] for m in known):
        raise ValueError(f"gather_rows: ranks disagree on row shape / dtype: {known}")
    if rows is None or len(rows) == 0:
        rows = np.zeros((0, *trail), dtype)
    counts = [int(c) for c in all_reduce_sum(_one_hot(rank(), world_size(), len(rows)))]
    m = max(counts)
    pad = np.zeros((m, *trail), dtype)
    pad[: len(rows)] = rows
    pid = np.full(m, -1, np.int64)
    pid[: len(ids)] = ids
    t_rows, t_ids = torch.from_numpy(pad), torch.from_numpy(pid)
    everyone = dst is None
    if everyone or rank() == dst:
        lr = [torch.empty_like(t_rows) for _ in range(world_size())]
        li = [torch.empty_like(t_ids) for _ in range(world_size())]
    else:
        lr = li = None
    if everyone:
        tdist.all_gather(lr, t_rows)
        tdist.all_gather(li, t_ids)
    else:
        tdist.gather(t_rows, lr, dst=dst)
        tdist.gather(t_ids, li, dst=dst)
        if rank() != dst:
            return None
    all_rows = np.concatenate([x.numpy()[:c] for x, c in zip(lr, counts)])
    all_ids = np.concatenate([x.numpy()[:c] for x, c in zip(li, counts)])
    return all_rows[_check_order(all_ids)]


def _one_hot(r: int, w: int, value: float) -> np.ndarray:
    a = np.zeros(w, np.float64)
    a[r] = value
    return a


def _check_order(ids: np.ndarray) -> np.ndarray:
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    if len(s) > 1 and (s[1:] == s[:-1]).any():
        raise RuntimeError(f"gather_rows: sample index {int(s[1:][s[1:] == s[:-1]][0])} was computed twice")
    return order


def sync_generator(gen: torch.Generator, src: int = 0) -> None:
    """Give every rank rank src's generator state (after per-rank draws of differing size)."""
    if not is_initialized():
        return
    state = gen.get_state()
    tdist.broadcast(state, src=src)
    gen.set_state(state)


def reduce_mean_and_flag(value: float, weight: float, flag: bool) -> tuple[float, bool]:
    """(sum over ranks of value * weight, whether any rank raised flag): one small all-reduce."""
    if not is_initialized():
        return value * weight if weight != 1.0 else value, flag
    out = all_reduce_sum(np.array([value * weight, float(flag)]))
    return float(out[0]), bool(out[1] > 0)


def is_comm_error(e: BaseException) -> bool:
    """A failed collective (a peer died or timed out), as opposed to an error of this rank's own."""
    names = {c.__name__ for c in type(e).__mro__}
    if names & {"DistBackendError", "DistNetworkError", "DistStoreError"}:
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and any(s in text for s in (
        "Connection closed by peer", "Connection reset by peer", "Gloo", "gloo", "NCCL", "Broken pipe",
        "Timed out", "timed out"))


def describe_failure(e: BaseException) -> str:
    """One line for a rank's failure; a collective error says that another rank probably died first."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if is_comm_error(e):
        return (f"{prefix()}lost contact with another process in a collective operation ({type(e).__name__}: "
                f"{first[:200]}); another rank probably died first, see its message (torchrun names it)")
    return f"{prefix()}{type(e).__name__}: {first}"
