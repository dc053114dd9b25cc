"""Worker shards: equal, contiguous, reproducible, and quiet in the job log."""

from __future__ import annotations

from platform.train.sharding import DeterministicShards


def _configure(dataset, world_size: int) -> list[dict]:
    return DeterministicShards().configure({"train": dataset}, world_size=world_size,
                                           worker_handles=None, worker_node_ids=None)


def _ids(iterator) -> list[int]:
    return [int(i) for batch in iterator.iter_batches(batch_format="numpy") for i in batch["id"]]


def test_shards_are_equal_contiguous_and_the_same_on_every_execution(ray_cluster):
    stream = ray_cluster.data.range(11, override_num_blocks=3)

    first = [_ids(shard["train"]) for shard in _configure(stream, 2)]
    again = [_ids(shard["train"]) for shard in _configure(stream, 2)]

    assert first == again
    assert [len(ids) for ids in first] == [5, 5]  # the eleventh row is the remainder
    assert first[0] + first[1] == list(range(10))


def test_the_split_logs_plain_lines_and_the_shard_reads_log_nothing(ray_cluster):
    stream = ray_cluster.data.range(4)
    driver_context = ray_cluster.data.DataContext.get_current()
    before = (driver_context.use_ray_tqdm, driver_context.enable_progress_bars)

    shards = _configure(stream, 2)

    assert stream.context.use_ray_tqdm is False  # periodic log lines, not terminal bars
    for shard in shards:
        context = shard["train"].get_context()
        assert context.enable_progress_bars is False
        assert context.print_on_execution_start is False
    # The driver's own datasets keep their progress output.
    assert (driver_context.use_ray_tqdm, driver_context.enable_progress_bars) == before
