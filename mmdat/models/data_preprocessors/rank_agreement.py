"""Decisions that every rank of a distributed run must take alike (a skip of DAT's adversarial half)."""
from __future__ import annotations

import torch
from mmengine.dist import all_reduce, get_comm_device, get_rank, get_world_size, is_distributed


def ranks_flagging(flag: bool) -> list[int]:
    """The ranks on which ``flag`` is True (every rank gets the same list).

    One ``all_reduce`` of a world-size vector when ``torch.distributed`` is initialised, so every rank
    must call it at the same point; a single process returns ``[0]`` or ``[]``.
    """
    if not is_distributed():
        return [0] if flag else []
    flags = torch.zeros(get_world_size(), device=get_comm_device())
    flags[get_rank()] = float(flag)
    all_reduce(flags, op='sum')
    return [rank for rank, value in enumerate(flags.tolist()) if value > 0]


def describe_ranks(ranks: list[int]) -> str:
    """'' in a single process, else ' on rank 1' / ' on ranks 0, 3'."""
    if not is_distributed():
        return ''
    return f" on rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"
