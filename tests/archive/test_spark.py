"""Archive labelling on Spark (`local[2]`): the same ids as `Labeler.label`, one set of
clusters for every partition, and the CLI's `--engine spark`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from logclust.cli.main import main
from logclust.cluster.labeler import Labeler
from tests.conftest import synthetic_lines

pytest.importorskip("pyspark", reason="archive labelling needs logclust[spark] (pyspark)")
if shutil.which("java") is None:
    pytest.skip(
        "Spark needs a Java runtime: apt-get install openjdk-17-jre-headless",
        allow_module_level=True,
    )

from pyspark.sql import SparkSession  # noqa: E402

from logclust.archive.spark import FitSpec, label_dataframe, session  # noqa: E402

ROWS = 3000


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    s = session("local[2]", app_name="logclust-test")
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Two Parquet files (so at least two partitions) of synthetic lines, row number `n`."""
    d = tmp_path_factory.mktemp("archive")
    texts = [t for t, _ in synthetic_lines(ROWS, seed=3)]
    half = ROWS // 2
    for i, (lo, hi) in enumerate(((0, half), (half, ROWS))):
        table = pa.table({"n": np.arange(lo, hi), "body": texts[lo:hi]})
        pq.write_table(table, d / f"part{i}.parquet")
    return d, texts


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by("n")


def test_ids_equal_labeler_label(
    spark: SparkSession, archive: tuple[Path, list[str]], tiny_bundle: Path
) -> None:
    folder, texts = archive
    df = spark.read.parquet(str(folder / "*.parquet"))
    assert df.rdd.getNumPartitions() >= 2
    out = _sorted(label_dataframe(df, tiny_bundle).toArrow())
    lab = Labeler.load(tiny_bundle)
    ids, dist = lab.clusters.assign(lab.embed(texts))  # type: ignore[union-attr]
    np.testing.assert_array_equal(out.column("cluster_id").to_numpy(), ids)
    np.testing.assert_allclose(out.column("cluster_distance").to_numpy(), dist, atol=1e-5)
    assert out.column("body").to_pylist() == texts
    assert out.column_names == ["n", "body", "cluster_id", "cluster_distance"]


def test_null_texts_get_minus_one_and_nan(spark: SparkSession, tiny_bundle: Path) -> None:
    texts = [t for t, _ in synthetic_lines(40, seed=4)]
    body = [None if i % 7 == 0 else t for i, t in enumerate(texts)]
    df = spark.createDataFrame(pa.table({"n": np.arange(40), "body": pa.array(body, pa.string())}))
    out = _sorted(label_dataframe(df, tiny_bundle).toArrow())
    ids = out.column("cluster_id").to_numpy()
    dist = out.column("cluster_distance").to_numpy()
    null = np.array([b is None for b in body])
    assert (ids[null] == -1).all() and np.isnan(dist[null]).all()
    kept = [t for t in body if t is not None]
    np.testing.assert_array_equal(ids[~null], Labeler.load(tiny_bundle).label(kept))


def test_fitted_clusters_are_shared_by_every_partition(
    spark: SparkSession, archive: tuple[Path, list[str]], tiny_bundle: Path
) -> None:
    folder, _ = archive
    df = spark.read.parquet(str(folder / "*.parquet")).repartition(4)
    out = label_dataframe(df, tiny_bundle, fit=FitSpec(fit=True, sample_rows=500)).toArrow()
    lab = Labeler.load(tiny_bundle)
    masked = lab.masker.mask(out.column("body").combine_chunks()).to_pylist()
    ids = out.column("cluster_id").to_pylist()
    by_text: dict[str, set[int]] = {}
    for m, i in zip(masked, ids, strict=True):
        by_text.setdefault(m, set()).add(i)
    # Rows of one masked text sit in different partitions; one fit means one id for them.
    assert all(len(s) == 1 for s in by_text.values())
    assert min(ids) >= 0 and len(set(ids)) >= 3


def test_cli_engine_spark_writes_a_parquet_folder(
    spark: SparkSession, archive: tuple[Path, list[str]], tiny_bundle: Path, tmp_path: Path
) -> None:
    folder, texts = archive
    out = tmp_path / "out"
    argv = ["label", "--engine", "spark", "--master", "local[2]", "--bundle", str(tiny_bundle)]
    assert main(argv + ["--input", str(folder / "*.parquet"), "--output", str(out)]) == 0
    table = _sorted(pq.read_table(out))
    expected = Labeler.load(tiny_bundle).label(texts)
    np.testing.assert_array_equal(table.column("cluster_id").to_numpy(), expected)
