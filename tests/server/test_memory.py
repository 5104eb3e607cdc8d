"""The sidecar's process memory settings."""

import platform

import pyarrow as pa

from logclust.server.memory import lean_process_memory


def test_lean_process_memory_switches_arrow_to_the_system_allocator() -> None:
    before = pa.default_memory_pool()
    try:
        done = lean_process_memory()
        assert done["arrow_system_pool"] and pa.default_memory_pool().backend_name == "system"
        if platform.libc_ver()[0] == "glibc":
            assert done["glibc_mallopt"]
        # Arrow still works from the system pool.
        assert pa.array(["a", "b"]).dictionary_encode().dictionary.to_pylist() == ["a", "b"]
    finally:
        pa.set_memory_pool(before)
