"""One BLAS thread for the `logclust` command, set before numpy loads.

The sidecar's numpy work is many small array operations per batch, next to gRPC's threads
and the encoder's own pool: BLAS threads only contend with them for the cores
(`python -m bench.blas_threads`: labelling a loghub replay took 16% less CPU per row with
one thread, at the same rows per second). A value the user set is kept
(`OPENBLAS_NUM_THREADS=4 logclust ...`).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
