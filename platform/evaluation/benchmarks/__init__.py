"""The four benchmarks of SPEC §5, by the names the configuration uses."""

from __future__ import annotations

from platform.evaluation.benchmarks.alpaca_eval import AlpacaEvalBenchmark
from platform.evaluation.benchmarks.arena_hard import ArenaHardBenchmark
from platform.evaluation.benchmarks.base import Benchmark
from platform.evaluation.benchmarks.mt_bench import MtBenchBenchmark
from platform.evaluation.benchmarks.pairwise import PairwiseBenchmark

BENCHMARK_CLASSES: dict[str, type[Benchmark]] = {
    cls.name: cls for cls in (PairwiseBenchmark, MtBenchBenchmark, AlpacaEvalBenchmark,
                              ArenaHardBenchmark)
}

__all__ = ["BENCHMARK_CLASSES", "Benchmark"]
