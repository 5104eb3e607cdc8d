"""One BLAS thread for the `logclust` command, set before numpy loads.

The sidecar's numpy work is many small array operations per batch, next to gRPC's threads
and the encoder's own pool: BLAS threads only contend with them for the cores. On a
2-core machine, labelling shuffled loghub lines in process took 20-40% more CPU per row
with OpenBLAS's default threads than with one (73,000-97,000 rows per CPU second against
117,000-124,000; free-text refits 1.5-3x more under load), and was no faster by the clock.
A value the user set is kept (`OPENBLAS_NUM_THREADS=4 logclust ...`).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
