"""Who is reading: this process's DDP rank and its DataLoader worker, for splitting a dataset between readers."""

from __future__ import annotations

import os

import torch


def rank_world(use_env: bool = False) -> tuple[int, int]:
    """(rank, world size): torch.distributed's when initialised; otherwise, with ``use_env``, the launcher's
    environment (``RANK``, ``WORLD_SIZE``: webdataset's rule for tar shards), else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    if use_env:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return 0, 1


def worker() -> tuple[int, int]:
    """(worker id, number of workers) of the DataLoader worker this runs in; (0, 1) in the main process."""
    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def reader_index(split_by_node: bool = True) -> tuple[int, int]:
    """(this reader's index, number of readers) over DDP ranks (when ``split_by_node``) and workers."""
    rank, world = rank_world(use_env=True) if split_by_node else (0, 1)
    wid, nw = worker()
    return rank * nw + wid, world * nw
