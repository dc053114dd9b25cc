"""Precomputed reference log-probs: a Ray Data batch-inference pass, cached on disk.

With ``model.reference_logps=precomputed`` the frozen reference model scores the training
stream once, before training, in a pool of Ray actors (one per GPU, or one per spare CPU
group on a CPU cluster). The stream's rows are written with their reference log-probs as
Parquet files under a cache key; training then reads those files, in order, instead of
the stream, and no worker holds a reference model. A second run on the same data and
reference finds the files and skips the pass.

The key covers everything the rows and their order depend on: the data fingerprint (rows,
data config, data shape, tokenizer), the seed of the shuffle, the stream's columns, the
reference model's weights and the precision it runs in, and the objective's options when
they decide a ``weight`` column. The scorer pads rows exactly as a training worker does
(the shape adapter's ``collate``), so the log-probs equal the live reference's to float
tolerance.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from objectives.base import DataShape

logger = logging.getLogger(__name__)

BINARY_REFERENCE = "reference_logps"
MISMATCHED_REFERENCE = "reference_mismatched_logps"
CHOSEN_REFERENCE = "reference_chosen_logps"
REJECTED_REFERENCE = "reference_rejected_logps"
META_FILE = "meta.json"  # written last: a folder without it is an unfinished pass
ROWS_PER_FILE = 50_000
_WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".gguf")


def reference_columns(shape: DataShape, mismatched: bool) -> list[str]:
    if shape == DataShape.PAIRED:
        return [CHOSEN_REFERENCE, REJECTED_REFERENCE]
    return [BINARY_REFERENCE] + ([MISMATCHED_REFERENCE] if mismatched else [])


def model_identity(path: str) -> str:
    """A digest of a model folder's config and weights; a hub id stands for itself."""
    folder = Path(path)
    if not folder.is_dir():
        return path
    digest = hashlib.blake2b(digest_size=20)
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and (p.name == "config.json" or p.suffix in _WEIGHT_FILES))
    if not files:
        raise ValueError(f"the reference model folder {path} holds no config.json or weights")
    for file in files:
        digest.update(str(file.relative_to(folder)).encode() + b"\x00")
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    fingerprint: str
    seed: int
    columns: tuple[str, ...]
    reference: str
    bf16: bool
    weighting: str | None  # the objective and its options when they weigh rows

    def digest(self) -> str:
        payload = json.dumps(self.__dict__, sort_keys=True, default=list)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


class ReferenceScorer:
    """A Ray Data actor: the reference model, scoring batches of stream rows."""

    def __init__(self, reference_path: str, shape: DataShape, pad_token_id: int,
                 bf16: bool, use_gpu: bool, threads: int, trust_remote_code: bool,
                 attn_implementation: str = "auto", layout: str = "auto") -> None:
        import torch

        from platform.models.loading import attention_implementation, load_causal_lm
        from platform.train.batches import ADAPTERS
        from platform.train.scoring import TokenScorer, choose_layout, probe

        torch.set_num_threads(threads)
        self.device = torch.device("cuda" if use_gpu else "cpu")
        dtype = torch.bfloat16 if bf16 else torch.float32
        attention = attention_implementation(attn_implementation, use_gpu, bf16)
        causal_lm = load_causal_lm(reference_path, trust_remote_code, attention)
        found = probe(causal_lm, self.device, bf16)
        self.model = TokenScorer(causal_lm, found.output_where_scored).to(self.device, dtype)
        self.model.eval().requires_grad_(False)
        self.layout = choose_layout(layout, found)
        self.shape, self.pad_token_id = shape, pad_token_id
        self.collate = ADAPTERS[shape].collate

    def __call__(self, batch: pa.Table) -> pa.Table:
        import torch

        from platform.train.batches import MISMATCHED, ROWS
        from platform.train.scoring import completion_logps

        rows = {name: batch.column(name).to_numpy(zero_copy_only=False)
                for name in batch.column_names}
        sequences, extras = self.collate(rows, self.pad_token_id, self.layout)
        with torch.no_grad():
            logps, _ = completion_logps(self.model, sequences.to(self.device))
            scores = logps.float().cpu().numpy()
            if self.shape == DataShape.PAIRED:
                chosen, rejected = np.split(scores, 2)
                return _append(batch, {CHOSEN_REFERENCE: chosen, REJECTED_REFERENCE: rejected})
            if ROWS in extras:  # mismatched pairs scored in the same pass, after the rows
                count = extras[ROWS]
                return _append(batch, {BINARY_REFERENCE: scores[:count],
                                       MISMATCHED_REFERENCE: scores[count:]})
            columns = {BINARY_REFERENCE: scores}
            if MISMATCHED in extras:
                other, _ = completion_logps(self.model, extras[MISMATCHED].to(self.device))
                columns[MISMATCHED_REFERENCE] = other.float().cpu().numpy()
        return _append(batch, columns)


def _append(batch: pa.Table, columns: dict[str, np.ndarray]) -> pa.Table:
    for name, values in columns.items():
        batch = batch.append_column(name, pa.array(values.astype(np.float32)))
    return batch


@dataclass(frozen=True)
class ScoringPlan:
    """How the batch-inference pass uses the cluster."""

    actors: int
    cpus_per_actor: float
    use_gpu: bool
    threads: int


def plan_scoring(cluster: dict[str, float], use_gpu: bool) -> ScoringPlan:
    """One actor per GPU; on CPUs, one actor per two CPUs, always leaving one CPU free for
    the stream's own tasks (which otherwise starve, as with training workers)."""
    cpus = int(cluster.get("CPU", 1))
    if use_gpu:
        return ScoringPlan(int(cluster.get("GPU", 1)), 1.0, True, 4)
    actors = max(1, (cpus - 1) // 2)
    per_actor = max(0.001, min(1.0, (cpus - 1) / actors)) if cpus > 1 else 0.001
    return ScoringPlan(actors, round(per_actor, 3), False, max(1, cpus // actors))


@dataclass
class Precomputed:
    dataset: Any  # ray.data.Dataset of the stream's rows and their reference log-probs
    folder: Path
    cache_hit: bool
    seconds: float


def cached_stream(stream, key: CacheKey, cache_dir: Path, rows: int, *, reference_path: str,
                  shape: DataShape, pad_token_id: int, batch_size: int, plan: ScoringPlan,
                  trust_remote_code: bool, attn_implementation: str = "auto",
                  layout: str = "auto") -> Precomputed:
    """The stream with reference log-probs, from the cache or from a new scoring pass."""
    import ray.data

    folder = cache_dir / key.digest()
    started = time.perf_counter()
    files = _complete_files(folder, rows)
    hit = files is not None
    if hit:
        logger.info("reference log-probs: cache hit, %d rows in %s", rows, folder)
    else:
        logger.info("reference log-probs: scoring %d rows with %d actor(s) into %s",
                    rows, plan.actors, folder)
        scored = stream.map_batches(
            ReferenceScorer, batch_size=batch_size, batch_format="pyarrow",
            fn_constructor_kwargs={
                "reference_path": reference_path, "shape": shape,
                "pad_token_id": pad_token_id, "bf16": key.bf16, "use_gpu": plan.use_gpu,
                "threads": plan.threads, "trust_remote_code": trust_remote_code,
                "attn_implementation": attn_implementation, "layout": layout},
            concurrency=plan.actors, num_cpus=plan.cpus_per_actor,
            num_gpus=1 if plan.use_gpu else 0)
        files = _write(scored, folder, key, rows)
    dataset = ray.data.read_parquet([str(f) for f in files], file_extensions=["parquet"])
    return Precomputed(dataset, folder, hit, time.perf_counter() - started)


def _complete_files(folder: Path, rows: int) -> list[Path] | None:
    """The part files of a finished pass with the expected row count, else None."""
    meta_file = folder / META_FILE
    if not meta_file.is_file():
        return None
    meta = json.loads(meta_file.read_text())
    files = [folder / name for name in meta["files"]]
    if meta["rows"] != rows or not all(f.is_file() for f in files):
        logger.warning("reference log-prob cache %s is incomplete (%s rows, %d expected); "
                       "scoring again", folder, meta["rows"], rows)
        return None
    return files


def _write(scored, folder: Path, key: CacheKey, rows: int) -> list[Path]:
    """Stream the scored rows into ordered Parquet files (the driver writes them in the
    stream's order), then publish the folder with its ``meta.json``."""
    staging = folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    names: list[str] = []
    written, writer, writer_rows, last_log = 0, None, 0, time.monotonic()
    try:
        for batch in scored.iter_batches(batch_size=4096, batch_format="pyarrow"):
            if writer is None or writer_rows >= ROWS_PER_FILE:
                if writer is not None:
                    writer.close()
                names.append(f"part-{len(names):06d}.parquet")
                writer, writer_rows = pq.ParquetWriter(staging / names[-1], batch.schema), 0
            writer.write_table(batch)
            writer_rows += batch.num_rows
            written += batch.num_rows
            if time.monotonic() - last_log > 30:
                logger.info("reference log-probs: %d/%d rows scored", written, rows)
                last_log = time.monotonic()
    finally:
        if writer is not None:
            writer.close()
    if written != rows:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"the reference scoring pass wrote {written} rows, but the stream "
                           f"holds {rows} per epoch; nothing was cached")
    (staging / META_FILE).write_text(json.dumps(
        {"rows": rows, "files": names, "key": key.__dict__}, indent=1, default=list))
    try:
        staging.rename(folder)
    except OSError:  # a concurrent run published the same pass first
        shutil.rmtree(staging, ignore_errors=True)
        files = _complete_files(folder, rows)
        if files is None:
            raise
        return files
    return [folder / name for name in names]
