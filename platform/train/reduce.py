"""The objectives' :class:`~objectives.base.Reducer` over ``torch.distributed``."""

from __future__ import annotations

import torch
import torch.distributed as dist


class DistributedReducer:
    """All-reduce sums over every worker of the default process group."""

    def __init__(self) -> None:
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.detach().clone()
        if self.world_size > 1:
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def all_true(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` holds on every worker (a collective: all workers call it)."""
        missing = torch.tensor([0.0 if flag else 1.0], device=device)
        return bool(self.sum(missing).item() == 0)

    def max(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise maximum over every worker (a collective)."""
        highest = tensor.detach().clone()
        if self.world_size > 1:
            dist.all_reduce(highest, op=dist.ReduceOp.MAX)
        return highest
