"""Labelling archives on engines people already run: Apache Spark (`logclust.archive.spark`,
the `spark` extra) over the task-side Arrow labelling in `logclust.archive.tasks`."""
