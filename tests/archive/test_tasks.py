"""The task side of archive labelling, without Spark: Arrow batches in and out."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from logclust.archive.tasks import TaskSpec, label_batches, output_schema
from logclust.cluster.labeler import Labeler
from tests.conftest import synthetic_lines


def test_batches_get_the_labelers_ids_and_keep_columns(tiny_bundle: Path) -> None:
    lab = Labeler.load(tiny_bundle)
    assert lab.clusters is not None
    texts = [t for t, _ in synthetic_lines(300, seed=5)]
    body = pa.array([None, *texts[1:]], pa.large_string())  # Spark may send large strings
    batch = pa.RecordBatch.from_arrays([pa.array(range(300)), body], names=["n", "body"])
    spec = TaskSpec(str(tiny_bundle), None, "body")
    half = [batch.slice(0, 150), batch.slice(150)]
    out = pa.Table.from_batches(
        label_batches(iter(half), spec, lab.clusters.centroids, lab.clusters.radii)
    )
    assert out.column_names == ["n", "body", "cluster_id", "cluster_distance"]
    assert out.schema.field("cluster_id").type == pa.int32()
    assert out.schema.field("cluster_distance").type == pa.float32()
    ids = out.column("cluster_id").to_numpy()
    assert ids[0] == -1 and np.isnan(out.column("cluster_distance")[0].as_py())
    np.testing.assert_array_equal(ids[1:], lab.label(texts[1:]))


def test_a_fitted_models_templates_reach_the_tasks(tiny_bundle: Path) -> None:
    lab = Labeler.load(tiny_bundle)
    texts = [t for t, _ in synthetic_lines(300, seed=7)]
    model = lab.fit(texts)
    assert model.templates is not None
    batch = pa.RecordBatch.from_arrays([pa.array(texts)], names=["body"])
    spec = TaskSpec(str(tiny_bundle), None, "body")
    doc = model.templates.to_doc()
    out = pa.Table.from_batches(
        label_batches(iter([batch]), spec, model.centroids, model.radii, doc)
    )
    np.testing.assert_array_equal(out.column("cluster_id").to_numpy(), lab.label(texts))


def test_existing_cluster_id_column_is_rejected() -> None:
    schema = pa.schema([("body", pa.string()), ("cluster_id", pa.int32())])
    with pytest.raises(ValueError, match="already has a cluster_id"):
        output_schema(schema)
