"""Deterministic data shards for the Ray Train workers.

Ray Train's default ``streaming_split`` hands blocks to whichever worker has received the
fewest rows so far, at the moment each block is ready: two executions of the same dataset
can give a worker different rows. A run restarted after a failure, or resumed from a
checkpoint, must see exactly the data the interrupted run would have seen, so the training
stream is split with ``Dataset.split(equal=True)`` instead: it materialises the stream (in
Ray's object store, which spills to disk) and cuts it into equal, contiguous shards in the
stream's seeded order. Re-executing the pipeline reproduces every shard exactly.

Progress goes to the job log as plain lines: the split (one pass of the whole pipeline) logs
Ray Data's periodic summaries instead of terminal progress bars, which a Ray actor's log
turns into thousands of lines, and each worker's per-epoch read of its materialised shard
runs without progress output.
"""

from __future__ import annotations

from ray.train import DataConfig


class DeterministicShards(DataConfig):
    """Equal, reproducible shards of every dataset, one per worker."""

    def configure(self, datasets, world_size: int, worker_handles, worker_node_ids,
                  **kwargs) -> list[dict]:
        shards: list[dict] = [{} for _ in range(world_size)]
        for name, dataset in datasets.items():
            # Every dataset carries its own copy of the DataContext: no other one changes.
            dataset.context.use_ray_tqdm = False
            # equal=True drops the remainder rows so that no worker waits in a collective
            # for a worker that ran out; steps_per_epoch counts with the same rule.
            for rank, piece in enumerate(dataset.split(world_size, equal=True)):
                # The piece holds its own copy of the stream's DataContext.
                piece.context.enable_progress_bars = False
                piece.context.print_on_execution_start = False
                shards[rank][name] = piece.iterator()
        return shards
