"""Objectives run in lockstep on threads, each with its own shard: a two-worker world.

Each reducer call waits for every worker's tensor and returns the total, so a worker that
skips a reduction, or sends another shape, makes the test fail instead of passing.
"""

from __future__ import annotations

import threading

import torch

from objectives.base import BinaryLogps, Objective, ObjectiveOutput, Reducer


class World:
    """Workers in threads; each all-reduce waits until every worker has sent its tensor."""

    def __init__(self, size: int) -> None:
        self.slots: list[torch.Tensor | None] = [None] * size
        self.barrier = threading.Barrier(size, timeout=10)

    def all_reduce(self, rank: int, tensor: torch.Tensor) -> torch.Tensor:
        self.slots[rank] = tensor.detach().clone()
        self.barrier.wait()
        total = torch.stack(self.slots).sum(dim=0)
        self.barrier.wait()  # no worker overwrites its slot before all have read
        return total


class WorkerReducer:
    def __init__(self, world: World, rank: int) -> None:
        self.world, self.rank, self.world_size = world, rank, len(world.slots)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.world.all_reduce(self.rank, tensor)


def run_workers(objectives: list[Objective], batches: list[BinaryLogps]) -> list[ObjectiveOutput]:
    world = World(len(batches))
    outputs: list[ObjectiveOutput | None] = [None] * len(batches)
    errors: list[Exception] = []

    def work(rank: int) -> None:
        reducer: Reducer = WorkerReducer(world, rank)
        try:
            outputs[rank] = objectives[rank](batches[rank], reducer)
        except Exception as error:  # surfaced in the main thread below
            errors.append(error)
            world.barrier.abort()

    threads = [threading.Thread(target=work, args=(rank,)) for rank in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return outputs
