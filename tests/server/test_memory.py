"""The sidecar's memory: the budget's sizes and the process settings."""

import platform
import subprocess
import sys

import pyarrow as pa
import pytest

from logclust.cli import service
from logclust.cluster.config import StreamClusterConfig
from logclust.server import memory
from logclust.server.config import ServerConfig
from logclust.server.memory import lean_process_memory
from logclust.sidecar.config import StreamLabelerConfig


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


# --- budget --------------------------------------------------------------------------------

DIM = 384


def test_sizes_fit_the_budget_and_grow_with_it() -> None:
    sizes = [memory.sizes_for_budget(b, 64, DIM) for b in (340, 400, 512, 1024)]
    for budget, s in zip((340, 400, 512, 1024), sizes, strict=True):
        c = s.apply(StreamClusterConfig())
        worst = memory.state_bytes(c, 64, DIM, s.latency_max_bytes) / memory.MIB
        assert worst + memory.BASE_MIB + memory.HEADROOM_MIB <= budget + 1e-6
        assert s.latency_max_bytes >= memory.MIN_LATENCY_MIB * memory.MIB
    for a, b in zip(sizes, sizes[1:], strict=False):
        assert b.cache_size >= a.cache_size and b.reservoir_size >= a.reservoir_size
        assert b.max_clusters_total > a.max_clusters_total
        assert b.latency_max_bytes > a.latency_max_bytes
    # Never past the defaults, however large the budget; fewer sources get more each.
    big = memory.sizes_for_budget(100_000, 64, DIM)
    assert (big.cache_size, big.reservoir_size, big.memo_size) == (16_384, 4096, 16_384)
    assert big.mask_cache_size == StreamClusterConfig().mask_cache_size
    assert memory.sizes_for_budget(400, 8, DIM).reservoir_size > sizes[1].reservoir_size


def test_the_default_budget_holds_the_default_source_limit() -> None:
    least = memory.minimum_budget_mb(64, DIM)
    assert least <= ServerConfig().memory_budget_mb  # type: ignore[operator]
    s = memory.sizes_for_budget(least, 64, DIM)
    assert (s.cache_size, s.mask_cache_size, s.reservoir_size, s.memo_size) == (
        memory.MIN_CACHE,
        memory.MIN_CACHE,
        memory.MIN_RESERVOIR,
        memory.MIN_MEMO,
    )
    assert s.max_clusters_total == 64 * memory.MIN_CLUSTERS_PER_SOURCE


def test_the_mask_cache_holds_more_shapes_than_the_embedding_cache_holds_texts() -> None:
    # A mask cache entry holds no vector: the default budget keeps several shapes a text.
    s = memory.sizes_for_budget(ServerConfig().memory_budget_mb or 0, 64, DIM)
    assert s.mask_cache_size >= 3 * s.cache_size
    # Each shape beyond the embedding cache's texts is counted, at its own cost.
    c = s.apply(StreamClusterConfig())
    fewer = StreamClusterConfig(cache_size=c.cache_size, mask_cache_size=c.cache_size)
    extra = memory.state_bytes(c, 64, DIM, 0) - memory.state_bytes(
        s.apply(fewer, keep={"mask_cache_size"}), 64, DIM, 0
    )
    assert extra == pytest.approx((s.mask_cache_size - s.cache_size) * memory.MASK_ENTRY.bytes(DIM))


def test_a_budget_below_the_minimum_names_it() -> None:
    least = memory.minimum_budget_mb(64, DIM)
    with pytest.raises(ValueError, match=f"at least {least} MiB.*Received: memory_budget_mb=200"):
        memory.sizes_for_budget(200, 64, DIM)
    with pytest.raises(ValueError, match=f"at least {least} MiB"):
        ServerConfig(memory_budget_mb=200).sized(DIM)


def test_explicit_sizes_win_over_the_budget() -> None:
    budget = ServerConfig().memory_budget_mb
    assert budget is not None
    s = memory.sizes_for_budget(budget, 64, DIM)
    sized = ServerConfig(
        labeler=StreamLabelerConfig(clusters=StreamClusterConfig(reservoir_size=1000))
    )
    sized = sized.sized(DIM)
    assert sized.labeler.clusters.reservoir_size == 1000  # not a default: kept
    assert sized.labeler.clusters.cache_size == s.cache_size
    assert sized.labeler.latency_max_bytes == s.latency_max_bytes
    # A flag given with the default's value is kept too (`keep_sizes`).
    kept = ServerConfig(keep_sizes=frozenset({"cache_size"})).sized(DIM)
    assert kept.labeler.clusters.cache_size == StreamClusterConfig().cache_size
    assert ServerConfig(memory_budget_mb=None).sized(DIM) == ServerConfig(memory_budget_mb=None)
    assert sized.sized(DIM) == sized  # idempotent
    with pytest.raises(ValueError, match="keep_sizes"):
        ServerConfig(keep_sizes=frozenset({"threshold"}))


def test_serve_flags_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from logclust.cli import main as cli

    seen: list[ServerConfig] = []
    monkeypatch.setattr(service, "serve", lambda config, labeler: seen.append(config))
    monkeypatch.setattr(service, "lean_process_memory", lambda: {})
    monkeypatch.setattr(service, "keep_pandas_out", lambda: True)
    monkeypatch.setattr(service, "serving_labeler", lambda *a, **k: None)
    flags = ["--max-sources", "8", "--cache-size", "16384", "--mask-cache-size", "20000"]
    assert cli.main(["serve", *flags]) == 0
    assert cli.main(["serve", "--memory-budget-mb", "0", "--max-clusters", "10"]) == 0
    assert cli.main(["serve", "--keep-headers"]) == 0
    first, second, third = seen
    assert not first.labeler.clusters.keep_headers and third.labeler.clusters.keep_headers
    assert (
        first.labeler.max_sources == 8 and first.memory_budget_mb == ServerConfig().memory_budget_mb
    )
    assert first.keep_sizes == {"cache_size", "mask_cache_size"}
    assert first.labeler.clusters.cache_size == 16_384
    assert first.labeler.clusters.mask_cache_size == 20_000
    assert second.memory_budget_mb is None and second.labeler.clusters.max_clusters == 10
    help_text = cli.build_parser().format_help() + _serve_help(cli)
    assert f"default: {ServerConfig().memory_budget_mb}" in help_text


def _serve_help(cli: object) -> str:
    parser = cli.build_parser()  # type: ignore[attr-defined]
    sub = next(a for a in parser._actions if a.dest == "command")
    return str(sub.choices["serve"].format_help())


def test_keep_pandas_out_makes_the_import_fail_as_if_not_installed() -> None:
    code = (
        "import sys; from logclust.server.memory import keep_pandas_out\n"
        "assert keep_pandas_out()\n"
        "import pyarrow as pa\n"
        "assert pa.array(['a']).to_pylist() == ['a'] and 'pandas' not in sys.modules\n"
        "try:\n    import pandas\nexcept ModuleNotFoundError:\n    pass\n"
        "else:\n    raise SystemExit('pandas imported')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
