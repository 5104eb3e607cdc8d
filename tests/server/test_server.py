"""The sidecar over real gRPC on port 0: labelling, queries, bad input, metrics, restarts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import adjusted_rand_score

from logclust.cli import main as cli
from logclust.client import Client
from logclust.cluster.config import StreamClusterConfig
from logclust.proto import logclust_pb2 as pb
from logclust.proto import logclust_pb2_grpc as pb_grpc
from logclust.rpc.errors import status_for
from logclust.server import ServerConfig, SidecarServer, create_server
from logclust.sidecar.config import StreamLabelerConfig
from logclust.sidecar.metrics import Metrics
from logclust.sidecar.store import MemoryStore, SqliteStore
from logclust.wire import ipc
from logclust.wire.contract import ContractError, LimitExceededError
from tests.fakes import FakeLabeler, fake_traffic
from tests.wire.test_contract import non_utf8_ipc

REPO = Path(__file__).resolve().parents[2]
CLUSTERS = StreamClusterConfig(reservoir_size=1000, background_consolidation=False)
CFG = ServerConfig(
    listen="127.0.0.1:0",
    max_message_bytes=2 * 1024 * 1024,
    flush_interval_s=0.2,
    labeler=StreamLabelerConfig(max_rows_per_batch=20_000, clusters=CLUSTERS),
)
INVALID, EXHAUSTED = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture
def server() -> Iterator[tuple[SidecarServer, int]]:
    srv, port = create_server(CFG, labeler=FakeLabeler())
    with srv:
        yield srv, port


@pytest.fixture
def client(server: tuple[SidecarServer, int]) -> Iterator[Client]:
    with Client(f"127.0.0.1:{server[1]}") as c:
        yield c


@pytest.fixture(scope="module")
def traffic() -> pa.Table:
    t = fake_traffic(3000, seed=4)
    return t.append_column("row", pa.array(np.arange(t.num_rows)))


def _raw_label(port: int, payloads: list[bytes]) -> list[pb.LabelResponse]:
    """Sends raw payloads on one Label stream; returns responses or raises RpcError."""
    out: list[pb.LabelResponse] = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.LogClustStub(channel)
        requests = (pb.LabelRequest(batch_id=f"b{i}", arrow_ipc=p) for i, p in enumerate(payloads))
        for response in stub.Label(requests, timeout=30):
            out.append(response)
    return out


def test_label_keeps_order_and_passthrough_columns(client: Client, traffic: pa.Table) -> None:
    out = client.label(traffic, batch_size=400)
    added = ["cluster_id", "cluster_distance", "group_id"]
    assert out.column_names == traffic.column_names + added
    assert out.select(traffic.column_names).equals(traffic)
    assert out.schema.field("cluster_id").type == pa.int32()
    ids = out.column("cluster_id").to_numpy()
    kinds = out.column("kind").to_pylist()
    assert adjusted_rand_score(kinds[400:], ids[400:]) >= 0.95


def test_label_stream_echoes_batch_ids(server: tuple[SidecarServer, int]) -> None:
    t = pa.table({"body": ["a 1", "b 2"], "extra": [1.5, None]})
    responses = _raw_label(server[1], [ipc.encode_ipc(t)] * 3)
    assert [r.batch_id for r in responses] == ["b0", "b1", "b2"]
    back = ipc.decode_trusted_ipc(responses[0].arrow_ipc)
    assert back.column("extra").to_pylist() == [1.5, None] and responses[0].num_rows == 2


def test_latency_matches_numpy(client: Client, traffic: pa.Table) -> None:
    out = client.label(traffic, batch_size=1000)
    ids, lat = out.column("cluster_id").to_numpy(), out.column("latency_ms").to_numpy()
    table = client.latency(quantiles=[0.5, 0.9, 0.99, 0.999])
    assert sum(table.column("count").to_pylist()) == traffic.num_rows
    for row in table.to_pylist():
        mine = lat[ids == row["cluster_id"]]
        assert row["count"] == mine.size
        for q, col in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99_9")):
            exact = float(np.quantile(mine, q))
            assert abs(row[col] - exact) <= 0.01 * exact, (row["cluster_id"], q)
    windowed = client.latency(window_s=60, source="frontend")
    assert "window_start" in windowed.column_names
    assert sum(windowed.column("count").to_pylist()) == traffic.num_rows
    assert client.latency(source="nope").num_rows == 0
    recent = client.latency(since_s=60)
    assert 0 < sum(recent.column("count").to_pylist()) < traffic.num_rows


def test_clusters_call(client: Client, traffic: pa.Table) -> None:
    client.label(traffic, batch_size=1000)
    table = client.clusters()
    assert table.column_names == [
        "source",
        "cluster_id",
        "group_id",
        "size",
        "first_seen",
        "last_seen",
        "template",
        "exemplars",
        "active",
        "merged_into",
        "rows_per_s",
        "rows_per_s_before",
        "local",
    ]
    assert not any(table.column("local").to_pylist())  # no catalog: nothing is local
    assert sum(table.column("size").to_pylist()) == traffic.num_rows
    assert all(g is not None and g >= 0 for g in table.column("group_id").to_pylist())
    # Counted when received (not by event time), over the last rate window.
    window_s = CFG.labeler.rate_window_s
    rate = sum(table.column("rows_per_s").to_pylist())
    assert rate == pytest.approx(traffic.num_rows / window_s, rel=0.05)
    rows = {r["template"]: r for r in table.to_pylist()}
    cart = rows["product_id=<*>&quantity=<NUM>"]
    assert cart["active"] and cart["exemplars"] == ["product_id=<*>&quantity=<NUM>"]
    assert cart["first_seen"] <= cart["last_seen"] and cart["merged_into"] is None
    assert any(t.startswith("email=<*>&street_address=<*>") for t in rows)
    assert client.clusters(source="nope").num_rows == 0


def _ipc(table: pa.Table) -> bytes:
    return ipc.encode_ipc(table)


BAD_INPUTS = {
    "not_arrow": (b"GET / HTTP/1.1\r\n", INVALID, "not a valid Arrow IPC stream"),
    "truncated": (_ipc(pa.table({"body": ["a"] * 50}))[:-30], INVALID, "not a valid Arrow IPC"),
    "empty_payload": (b"", INVALID, "Empty payload"),
    "missing_body": (_ipc(pa.table({"text": ["a"]})), INVALID, "Missing required string column"),
    "mistyped_body": (_ipc(pa.table({"body": [1, 2]})), INVALID, "'body' must be string"),
    "null_body": (_ipc(pa.table({"body": ["a", None]})), INVALID, "must not contain nulls"),
    "non_utf8": (non_utf8_ipc(), INVALID, "UTF8"),
    "empty_batch": (_ipc(pa.table({"body": pa.array([], pa.string())})), INVALID, "Empty batch"),
    "bad_latency": (_ipc(pa.table({"body": ["a"], "latency_ms": [-3.0]})), INVALID, ">= 0"),
    "too_many_rows": (_ipc(pa.table({"body": ["x"] * 20_001})), EXHAUSTED, "too many rows"),
    "oversized": (_ipc(pa.table({"body": ["x" * 1000] * 3000})), EXHAUSTED, ""),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gets_a_clear_status_and_server_keeps_serving(
    case: str, server: tuple[SidecarServer, int], client: Client
) -> None:
    payload, code, message = BAD_INPUTS[case]
    good = _ipc(pa.table({"body": ["currency_code=EUR"] * 200, "latency_ms": [1.0] * 200}))
    with pytest.raises(grpc.RpcError) as info:
        _raw_label(server[1], [good, payload, good])
    assert info.value.code() == code
    assert message in info.value.details()
    # The batch answered before the bad one is kept; the server still serves.
    assert client.latency().column("count").to_pylist() == [200]
    out = client.label(pa.table({"body": ["currency_code=USD"]}))
    assert out.num_rows == 1
    assert client.latency().column("count").to_pylist() == [200]


def test_bad_query_arguments(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.latency(quantiles=[1.5])
    assert info.value.code() == INVALID and "q=1.5" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        client.latency(window_s=15)
    assert info.value.code() == INVALID and "multiple of the base window" in info.value.details()


def test_error_mapping() -> None:
    assert status_for(LimitExceededError("x")) == EXHAUSTED
    assert status_for(ContractError("x")) == INVALID
    # A bare ValueError/TypeError is a bug of ours, not the caller's (issue 11).
    assert status_for(ValueError("x")) == grpc.StatusCode.INTERNAL
    assert status_for(TypeError("x")) == grpc.StatusCode.INTERNAL
    assert status_for(RuntimeError("x")) == grpc.StatusCode.INTERNAL


def test_health_and_metrics(traffic: pa.Table) -> None:
    cfg = ServerConfig(
        listen="127.0.0.1:0", metrics_port=0, labeler=StreamLabelerConfig(clusters=CLUSTERS)
    )
    srv, port = create_server(cfg, labeler=FakeLabeler())
    with srv, Client(f"127.0.0.1:{port}") as client:
        assert client.health() == "SERVING"
        assert client.health("logclust.v1.LogClust") == "SERVING"
        client.label(traffic.slice(0, 500))
        with pytest.raises(grpc.RpcError):
            _raw_label(port, [b"junk"])
        url = f"http://127.0.0.1:{srv.metrics.port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        assert 'logclust_rows_total{source="frontend"} 500.0' in text
        assert 'logclust_errors_total{kind="invalid_argument"} 1.0' in text
        assert "logclust_batch_seconds_count 1.0" in text
        assert re.search(
            r'logclust_request_latency_ms_count\{cluster="\d+",group="\d+",source="frontend"\}',
            text,
        )
        srv.stop(grace=1)
        assert srv.wait_for_termination(0)


def test_a_periodic_flush_saves_what_came_before_and_is_counted(traffic: pa.Table) -> None:
    store = MemoryStore()
    srv, port = create_server(CFG, labeler=FakeLabeler(), store=store)
    with srv, Client(f"127.0.0.1:{port}") as client:
        client.label(traffic.slice(0, 300))
        assert srv.flusher.wait_for_next_flush(120)
        snapshot = store.load_state()
        assert set(snapshot.sources) == {"frontend"} and snapshot.sketches
        flushes = srv.metrics.registry.get_sample_value("logclust_flushes_total")
        assert flushes is not None and flushes >= 1


def test_metrics_label_cardinality_is_capped() -> None:
    m = Metrics(max_series=2)
    ids = np.arange(5, dtype=np.int32)
    m.observe_batch(0.01, ["s"], np.zeros(5, np.int32), ids, np.ones(5))
    assert m.cluster_latency.series == 3  # two clusters plus the overflow series
    text = "\n".join(str(s) for f in m.registry.collect() for s in f.samples)
    assert "'cluster': 'other'" in text
    # Over many batches and sources the table grows; a forgotten source's series go and
    # the others keep their counts.
    big = Metrics(max_series=1000)
    for i in range(300):
        big.observe_batch(0.01, ["a", "b"], np.array([0, 1], np.int32), np.full(2, i), np.ones(2))
    big.observe_batch(0.01, ["b"], np.zeros(1, np.int32), np.array([7]), np.full(1, 3.0))
    big.forget_source("a")
    assert big.cluster_latency.series == 300
    sums = {
        s.labels["cluster"]: s.value
        for f in big.registry.collect()
        if f.name == "logclust_request_latency_ms"
        for s in f.samples
        if s.name.endswith("_sum")
    }
    assert len(sums) == 300 and sums["7"] == 4.0 and sums["299"] == 1.0


def test_metrics_histogram_of_a_batch_equals_per_series_observations() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2, 3000).astype(np.int32)
    ids = rng.integers(-1, 6, 3000).astype(np.int32)
    lat = rng.lognormal(1.0, 2.0, 3000)
    lat[::7] = np.nan
    batched, one_by_one = Metrics(), Metrics()
    batched.observe_batch(0.01, ["a", "b"], codes, ids, lat)
    for code, name in enumerate(["a", "b"]):
        for cid in range(-1, 6):
            rows = (codes == code) & (ids == cid) & ~np.isnan(lat)
            if rows.any():
                one_by_one.cluster_latency.observe(name, cid, lat[rows])

    def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        fams = [f for f in m.registry.collect() if f.name == "logclust_request_latency_ms"]
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fams[0].samples}

    want, got = samples(one_by_one), samples(batched)
    assert got.keys() == want.keys() and len(got) > 100
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12)


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="Received: listen='nope'"):
        ServerConfig(listen="nope")
    with pytest.raises(ValueError, match="Received: flush_interval_s=30"):
        ServerConfig(flush_interval_s=30)


# --- subprocesses: kill -9 recovery, SIGTERM, the CLI -------------------------------------

CONFIG = """
import logging, sys
from logclust.server.app import create_server, serve
from logclust.server.config import ServerConfig
from logclust.cluster.config import StreamClusterConfig
from logclust.sidecar.config import StreamLabelerConfig
from tests.fakes import FAKE_KINDS, FakeLabeler, fake_traffic
logging.basicConfig(level=logging.INFO)
clusters = StreamClusterConfig(reservoir_size=1000, background_consolidation=False)
config = ServerConfig(listen="127.0.0.1:0", store_dir=sys.argv[1],
                      flush_interval_s=float(sys.argv[2]), grace_s=2.0,
                      labeler=StreamLabelerConfig(clusters=clusters))
"""
LAUNCH = CONFIG + "serve(config, FakeLabeler())\n"
# The sidecar, answering each line on stdin once a periodic flush that began after the
# line has saved ("flushed"): the test waits for the save, not for a time.
PROSE = [
    "My package arrived damaged and the box was crushed, please help.",
    "I want a refund for my order, please send my money back.",
    "Hi, my parcel is late again and I am still waiting for it.",
]
LAUNCH_FLUSH_ON_ASK = (
    CONFIG
    + """
srv, _ = create_server(config, FakeLabeler())
for _ in sys.stdin:
    assert srv.flusher.wait_for_next_flush(120)
    print("flushed", flush=True)
"""
)


def _wait_for_log(proc: subprocess.Popen[bytes], log: Path, pattern: str) -> re.Match[str]:
    """The first match of `pattern` in `log`, once the process wrote it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = re.search(pattern, log.read_text(), re.M)
        if m:
            return m
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        time.sleep(0.05)  # polls the file; the deadline only catches a hang
    proc.kill()
    raise AssertionError(f"{pattern!r} not in the log: {log.read_text()}")


def _start(cmd: list[str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=f, stderr=subprocess.STDOUT
        )
    return proc, int(_wait_for_log(proc, log, r"listening on [\d.]+:(\d+)").group(1))


def test_restart_after_kill_9_keeps_latency_and_cluster_ids(
    tmp_path: Path, traffic: pa.Table
) -> None:
    store = tmp_path / "store"
    cmd = [sys.executable, "-c", LAUNCH_FLUSH_ON_ASK, str(store), "0.2"]
    proc, port = _start(cmd, tmp_path / "first.log")
    try:
        with Client(f"127.0.0.1:{port}") as client:
            first = client.label(traffic, batch_size=1000)
            prose_first = client.label(pa.table({"body": PROSE}))
            before = client.latency(quantiles=[0.5, 0.99])
            clusters_before = client.clusters()
        assert proc.stdin is not None
        proc.stdin.write(b"flush?\n")
        proc.stdin.flush()
        _wait_for_log(proc, tmp_path / "first.log", r"^flushed$")  # a periodic flush saved
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    proc, port = _start(cmd, tmp_path / "second.log")
    try:
        with Client(f"127.0.0.1:{port}") as client:
            after = client.latency(quantiles=[0.5, 0.99])
            assert after.select(["cluster_id", "count", "p50", "p99"]).equals(
                before.select(["cluster_id", "count", "p50", "p99"])
            )
            kept = ["cluster_id", "group_id", "size", "template"]
            assert client.clusters().select(kept).equals(clusters_before.select(kept))
            again = client.label(traffic.slice(0, 1000))
            for column in ("cluster_id", "group_id"):
                np.testing.assert_array_equal(
                    again.column(column).to_numpy(), first.column(column).to_numpy()[:1000]
                )
            # Prose is placed by its groups: the same groups (and ids) after the restart.
            prose_again = client.label(pa.table({"body": PROSE}))
            for column in ("cluster_id", "group_id"):
                assert prose_again.column(column).equals(prose_first.column(column))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def test_sigterm_drains_and_flushes(tmp_path: Path, traffic: pa.Table) -> None:
    store = tmp_path / "store"
    # Long interval: only the shutdown flush can have saved the data.
    proc, port = _start([sys.executable, "-c", LAUNCH, str(store), "5"], tmp_path / "log")
    try:
        with Client(f"127.0.0.1:{port}") as client:
            client.label(traffic.slice(0, 500))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0  # grace 2 s, then the last flush; a hang fails here
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "log").read_text()
    assert "signal SIGTERM" in log and "sidecar stopped" in log
    snapshot = SqliteStore(store).load_state()
    assert set(snapshot.sources) == {"frontend"}
    assert snapshot.sketches


def test_cli_send_latency_clusters(
    server: tuple[SidecarServer, int],
    tmp_path: Path,
    traffic: pa.Table,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import pyarrow.parquet as pq

    addr = f"127.0.0.1:{server[1]}"
    src = tmp_path / "in.parquet"
    pq.write_table(traffic.slice(0, 1500), src)
    out = tmp_path / "out.parquet"
    assert (
        cli.main(["send", str(src), "--addr", addr, "--out", str(out), "--batch-size", "500"]) == 0
    )
    assert "1,500/1,500" in capsys.readouterr().err
    labelled = pq.read_table(out)
    assert labelled.num_rows == 1500 and "cluster_id" in labelled.column_names
    plot = tmp_path / "p99.png"
    assert (
        cli.main(
            [
                "latency",
                "--addr",
                addr,
                "--since",
                "1h",
                "--format",
                "json",
                "--quantiles",
                "0.5,0.99",
                "--plot",
                str(plot),
            ]
        )
        == 0
    )
    assert '"p99"' in capsys.readouterr().out and plot.stat().st_size > 1000
    assert cli.main(["clusters", "--addr", addr, "--format", "csv"]) == 0
    assert "product_id=<*>&quantity=<NUM>" in capsys.readouterr().out
    text = tmp_path / "lines.log"
    text.write_text("currency_code=EUR\ncurrency_code=USD\n")
    assert cli.main(["send", str(text), "--addr", addr]) == 0
    assert "cluster_id" in capsys.readouterr().out


def test_parse_duration() -> None:
    assert [cli.parse_duration(s) for s in ("10s", "15m", "2h", "1d", "250ms", "3")] == [
        10.0,
        900.0,
        7200.0,
        86400.0,
        0.25,
        3.0,
    ]
    with pytest.raises(Exception, match="Received: '5 weeks'"):
        cli.parse_duration("5 weeks")


def test_real_labeler_through_logclust_serve(
    tiny_bundle: Path, tmp_path: Path, traffic: pa.Table
) -> None:
    """`logclust serve --bundle` with the real Labeler, then SIGTERM."""
    cmd = [
        sys.executable,
        "-m",
        "logclust.cli.main",
        "-v",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--bundle",
        str(tiny_bundle),
        "--store",
        str(tmp_path / "store"),
    ]
    proc, port = _start(cmd, tmp_path / "log")
    try:
        with Client(f"127.0.0.1:{port}") as client:
            out = client.label(traffic.slice(0, 1000), batch_size=500)
            assert out.select(traffic.column_names).equals(traffic.slice(0, 1000))
            assert (out.column("cluster_id").to_numpy() >= 0).all()
            assert client.clusters().num_rows >= 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert os.path.exists(tmp_path / "store" / "logclust.sqlite3")


def test_bind_failure_is_a_clear_error(server: tuple[SidecarServer, int]) -> None:
    cfg = ServerConfig(
        listen=f"127.0.0.1:{server[1]}", labeler=StreamLabelerConfig(clusters=CLUSTERS)
    )
    with pytest.raises(OSError, match="Could not bind"):
        create_server(cfg, labeler=FakeLabeler())


def test_forget_call_and_cli(server: tuple[SidecarServer, int], client: Client) -> None:
    client.label(pa.table({"body": ["currency_code=EUR"], "source": ["to-forget"]}))
    assert "to-forget" in client.clusters().column("source").to_pylist()
    addr = f"127.0.0.1:{server[1]}"
    assert cli.main(["forget", "--addr", addr, "--source", "to-forget"]) == 0
    assert "to-forget" not in client.clusters().column("source").to_pylist()
    assert not client.forget("to-forget")
    with pytest.raises(grpc.RpcError) as err:
        client.forget("")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
