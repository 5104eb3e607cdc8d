"""The compiled sampler kernel, an optional extension (everything else is in pyproject.toml).

Without a C compiler the build skips it (`optional=True`) and the sampler runs its numpy
reference, which decides the same rows (logclust/sidecar/sample_compiled.py)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "logclust.sidecar._sample_kernel",
            sources=["logclust/sidecar/_sample_kernel.c"],
            # No fused multiply-add and no reordering: the same bits as numpy's arithmetic
            # (-O3 vectorizes only what keeps each operation's order; no -march: the
            # wheel runs on other machines).
            extra_compile_args=["-O3", "-ffp-contract=off", "-fno-fast-math", "-std=c11"],
            optional=True,
        )
    ]
)
