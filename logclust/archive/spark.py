"""Archive labelling on Apache Spark (the `spark` extra; needs a Java runtime).

`label_dataframe` adds `cluster_id` and `cluster_distance` to a DataFrame with two
`mapInArrow` steps (`logclust.archive.tasks`: LiteRT, no TensorFlow; batches stay Arrow
in every task): the first masks the text column, then the rows are shuffled by masked
text so that every distinct masked text lives in one partition, and the second embeds
each distinct masked text of its partition once and assigns it. Encoding, far dearer a
text than masking or assigning, is the cost of the job, so each distinct text is encoded
once over the whole job and the encoder work is split between the executors; one shuffle
of the rows is cheaper than masking twice (for a `distinct()` and a join) or caching the
masked rows.

Clusters are decided once, on the driver, from the bundle's centroids or by
`Labeler.fit` on a sample, and the arrays are broadcast, so every partition assigns
against the same centroids and the ids mean the same thing across the whole archive.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import FloatType, IntegerType, StringType, StructField, StructType

from logclust.archive.tasks import MASKED, TaskSpec, assign_batches, mask_batches
from logclust.cluster.clustering import ClusterModel
from logclust.cluster.labeler import Labeler
from logclust.wire.contract import BODY, CLUSTER_DISTANCE, CLUSTER_ID

logger = logging.getLogger(__name__)

DEFAULT_MASTER = "local[*]"
# Partitions of the shuffle by masked text, per core of the default parallelism: several
# per core so that the distinct texts (the encoder's work) spread evenly, and a slow task
# does not leave the other cores idle at the end of the stage.
PARTITIONS_PER_CORE = 4


@dataclass(frozen=True)
class FitSpec:
    """How the driver decides the clusters.

    Attributes:
        fit: fit on a sample of the input (else the bundle's centroids).
        k: KMeans with k clusters when fitting (None: by the bundle's distance threshold).
        sample_rows: rows drawn for the fit (a uniform sample, seeded).
        seed: of the sample and the fit.
    """

    fit: bool = False
    k: int | None = None
    sample_rows: int = 100_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sample_rows < 1:
            raise ValueError(f"sample_rows must be positive. Received: {self.sample_rows}")


def driver_clusters(
    df: DataFrame, labeler: Labeler, text_column: str, spec: FitSpec
) -> ClusterModel:
    """The clusters every task assigns to: the bundle's, or fitted once on a sample."""
    if not spec.fit and spec.k is None:
        if labeler.clusters is None:
            raise ValueError("The bundle has no centroids: pass fit=True. Received: fit=False")
        return labeler.clusters
    total = df.count()
    frac = min(1.0, 1.2 * spec.sample_rows / max(total, 1))
    part = df.select(text_column).where(df[text_column].isNotNull())
    sample = part.sample(fraction=frac, seed=spec.seed) if frac < 1.0 else part
    texts = _collect_strings(sample.limit(spec.sample_rows), text_column)
    logger.info("fitting clusters on %d of %d rows", len(texts), total)
    return labeler.fit(texts, k=spec.k, seed=spec.seed)


def _collect_strings(df: DataFrame, column: str) -> pa.Array:
    if hasattr(df, "toArrow"):  # pyspark >= 4: no pandas on the way
        return df.toArrow().column(column).combine_chunks()
    return pa.array([r[0] for r in df.collect()], pa.string())


def _check_new(df: DataFrame, names: tuple[str, ...]) -> None:
    for name in names:
        if name in df.columns:
            raise ValueError(f"Input already has a {name} column. Received: {df.columns}")


def masked_struct(df: DataFrame) -> StructType:
    """The DataFrame's schema plus the helper column `MASKED` (string, nullable)."""
    _check_new(df, (MASKED,))
    return StructType([*df.schema.fields, StructField(MASKED, StringType(), True)])


def output_struct(df: DataFrame) -> StructType:
    """The DataFrame's schema plus `cluster_id` (int) and `cluster_distance` (float)."""
    _check_new(df, (CLUSTER_ID, CLUSTER_DISTANCE))
    return StructType(
        [
            *df.schema.fields,
            StructField(CLUSTER_ID, IntegerType(), False),
            StructField(CLUSTER_DISTANCE, FloatType(), True),
        ]
    )


def label_dataframe(
    df: DataFrame,
    bundle: str | Path | None = None,
    text_column: str = BODY,
    fit: FitSpec | None = None,
    variant: str | None = None,
) -> DataFrame:
    """`df` with `cluster_id` (int32) and `cluster_distance` (float32) added, lazily.

    Args:
        df: any DataFrame with a string column `text_column`.
        bundle: bundle folder at a path every executor can read (None: the shipped one,
            installed with logclust on the executors).
        text_column: the column to label; null texts get id -1.
        fit: how the driver decides the clusters (default: the bundle's centroids).
        variant: encoder variant (None: the bundle's default).

    Returns:
        A DataFrame with `df`'s columns and rows, repartitioned by masked text (rows of
        one masked text together; `df`'s row order is not kept: sort by a key column
        when order matters). Nothing runs until it is written or collected, except the
        sample and fit when `fit` asks for one.
    """
    if text_column not in df.columns:
        raise ValueError(f"No column {text_column!r}. Received: columns={df.columns}")
    path = None if bundle is None else str(Path(bundle).resolve())
    labeler = Labeler.load(path, variant=variant)
    clusters = driver_clusters(df, labeler, text_column, fit or FitSpec())
    templates = None if clusters.templates is None else clusters.templates.to_doc()
    shared = df.sparkSession.sparkContext.broadcast(
        (clusters.centroids.astype(np.float32), clusters.radii.astype(np.float32), templates)
    )
    spec = TaskSpec(path, variant, text_column)
    out_struct = output_struct(df)

    def mask(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return mask_batches(batches, spec)

    def assign(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        centroids, radii, templates = shared.value
        return assign_batches(batches, spec, centroids, radii, templates)

    masked = df.mapInArrow(mask, masked_struct(df))
    # Hash partitioning: all rows of a masked text meet in one task, so the text is
    # embedded once for the whole job (row counts per partition may be skewed by a few
    # frequent texts; the per-row work after the shuffle is small next to the encoder).
    by_text = masked.repartition(shuffle_partitions(df), MASKED)
    return by_text.mapInArrow(assign, out_struct)


def shuffle_partitions(df: DataFrame) -> int:
    """Partitions of the shuffle by masked text: `PARTITIONS_PER_CORE` per core of the
    default parallelism, and no fewer than the input has (large archives keep their
    partition sizes)."""
    cores = df.sparkSession.sparkContext.defaultParallelism
    return max(PARTITIONS_PER_CORE * cores, df.rdd.getNumPartitions())


def session(master: str | None = None, app_name: str = "logclust-label") -> SparkSession:
    """A SparkSession: `master` when given, else spark-submit's, else `local[*]`.

    On a local master the Python workers run this interpreter (its virtualenv holds
    logclust); on a cluster, PYSPARK_PYTHON or the cluster's image decides.
    """
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    elif not _submitted():
        master = DEFAULT_MASTER
        builder = builder.master(master)
    if master is not None and master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return builder.getOrCreate()


def _submitted() -> bool:
    """Whether spark-submit started this driver (it sets the master for us)."""
    return "SPARK_SUBMIT_OPTS" in os.environ or "PYSPARK_GATEWAY_PORT" in os.environ


def read_input(spark: SparkSession, pattern: str) -> DataFrame:
    """Parquet files (`*.parquet`, globs allowed) as they are; other files as text, one
    record per line, in a `body` column."""
    if pattern.rstrip("/").endswith(".parquet") or Path(pattern).is_dir():
        return spark.read.parquet(pattern)
    return spark.read.text(pattern).withColumnRenamed("value", BODY)


def label_files(
    pattern: str,
    output: str,
    bundle: str | Path | None = None,
    master: str | None = None,
    fit: FitSpec | None = None,
    variant: str | None = None,
) -> int:
    """Labels files into a Parquet folder `output`; returns the rows written."""
    spark = session(master)
    df = read_input(spark, pattern)
    labelled = label_dataframe(df, bundle, BODY, fit, variant)
    labelled.write.mode("errorifexists").parquet(output)
    return int(spark.read.parquet(output).count())
