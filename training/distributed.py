"""Multi-worker training: the cluster from `TF_CONFIG` (or `--workers` / `--worker-index`)
and the `tf.distribute.MultiWorkerMirroredStrategy` the Trainer runs under.

One worker (no `TF_CONFIG`, or a cluster of one) means no strategy at all: the Trainer
then runs exactly as it always has, so the shipped model's training does not change.
Worker 0 is the chief: it alone writes checkpoints, the best weights, the history and
TensorBoard logs into the work folder, which every worker must see (a shared volume) so
that a restarted cluster resumes from the chief's last checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

TF_CONFIG = "TF_CONFIG"


@dataclass(frozen=True)
class Cluster:
    """Where this process sits in the training cluster.

    Attributes:
        workers: `host:port` of every worker, chief first.
        index: this worker's position in `workers`.
    """

    workers: tuple[str, ...] = ()
    index: int = 0

    def __post_init__(self) -> None:
        if self.workers and not 0 <= self.index < len(self.workers):
            raise ValueError(
                f"worker index must be in [0, {len(self.workers)}). Received: index={self.index}"
            )

    @property
    def size(self) -> int:
        return max(1, len(self.workers))

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    def tf_config(self) -> dict[str, Any]:
        return {
            "cluster": {"worker": list(self.workers)},
            "task": {"type": "worker", "index": self.index},
        }


ONE_WORKER = Cluster()


def cluster_from(workers: str | None = None, index: int | None = None) -> Cluster:
    """The cluster from `--workers host:port,...` and `--worker-index`, else `TF_CONFIG`.

    Flags win; they are written into `TF_CONFIG`, which is what TensorFlow reads.
    """
    if workers:
        if index is None:
            raise ValueError(f"--workers needs --worker-index. Received: workers={workers!r}")
        c = Cluster(tuple(w.strip() for w in workers.split(",") if w.strip()), index)
        os.environ[TF_CONFIG] = json.dumps(c.tf_config())
        return c
    raw = os.environ.get(TF_CONFIG)
    if not raw:
        return Cluster()
    conf = json.loads(raw)
    task = conf.get("task", {})
    if task.get("type", "worker") not in ("worker", "chief"):
        raise ValueError(f"Only worker tasks train. Received: task={task}")
    spec = conf.get("cluster", {})
    # A separate "chief" task, when the cluster names one, comes first.
    names = [*spec.get("chief", []), *spec.get("worker", [])]
    offset = len(spec.get("chief", [])) if task.get("type") == "worker" else 0
    return Cluster(tuple(names), offset + int(task.get("index", 0)))


def make_strategy(cluster: Cluster) -> Any:
    """`MultiWorkerMirroredStrategy` for a cluster of two or more, else None.

    Collectives run over gRPC with ring all-reduce (CPU workers; NCCL would need GPUs).
    """
    if cluster.size < 2:
        return None
    import tensorflow as tf  # parsing the cluster needs no TensorFlow; training does

    opts = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=opts)
