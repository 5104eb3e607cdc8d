"""The page server without a browser: routes, headers, escaping, TLS, snapshots shared,
and labelling that never waits for a page."""

from __future__ import annotations

import json
import ssl
import threading
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from logclust.client import Client
from logclust.rpc.tls import TlsConfig
from logclust.server import ServerConfig, SidecarServer, create_server
from logclust.server.config import http_address
from logclust.web.data import PageData
from logclust.web.encode import to_json
from tests.fakes import FakeLabeler, fake_traffic
from tests.pki import make_pki
from tests.web.traffic import XSS_BODIES, XSS_SOURCE, config, xss_batch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def served() -> Iterator[tuple[SidecarServer, str, Client]]:
    srv, port = create_server(config(grace_s=0), FakeLabeler())
    with srv, Client(f"127.0.0.1:{port}") as client:
        assert srv.page is not None
        client.label(fake_traffic(600).select(["body", "latency_ms", "source"]))
        client.label(xss_batch())
        yield srv, f"http://127.0.0.1:{srv.page.port}", client


def _get(url: str, method: str = "GET", **kw: Any) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10, **kw) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_pages_assets_and_headers(served: tuple[SidecarServer, str, Client]) -> None:
    _, base, _ = served
    for path, ctype in [
        ("/", "text/html"),
        ("/cluster?source=frontend&id=0", "text/html"),
        ("/static/page.js", "text/javascript"),
        ("/static/page.css", "text/css"),
        ("/static/icon.svg", "image/svg+xml"),
        ("/api/overview", "application/json"),
    ]:
        status, headers, body = _get(base + path)
        assert status == 200 and headers["Content-Type"].startswith(ctype), (path, headers)
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert body
    # Every page loads its script and style from this server only: no CDN, works offline.
    html = _get(base + "/")[2].decode()
    assert "http://" not in html and "https://" not in html and "<script>" not in html


def test_unknown_paths_bad_queries_and_writes(served: tuple[SidecarServer, str, Client]) -> None:
    _, base, _ = served
    for path in ("/nope", "/static/../server.py", "/static/missing.js", "/api/"):
        status, _, body = _get(base + path)
        assert status == 404 and b"No such page" in body, path
    assert _get(base + "/api/cluster?source=frontend&id=x")[0] == 400
    assert _get(base + "/api/cluster?id=1")[0] == 400
    status, _, body = _get(base + "/api/cluster?source=frontend&id=9999")
    assert status == 404 and b"No such cluster" in body
    assert _get(base + "/api/overview", method="POST")[0] == 405
    assert _get(base + "/", method="DELETE")[0] == 405
    status, _, body = _get(base + "/api/overview", method="HEAD")
    assert status == 200 and body == b""


def test_overview_and_cluster_read_the_domain_calls(
    served: tuple[SidecarServer, str, Client],
) -> None:
    srv, base, client = served
    doc = json.loads(_get(base + "/api/overview")[2])
    clusters = {(c["source"], c["cluster_id"]): c for c in client.clusters().to_pylist()}
    p99 = {
        (r["source"], r["cluster_id"]): r["p99"]
        for r in client.latency([0.99], since_s=srv.sidecar.config.rate_window_s).to_pylist()
    }
    shown = [c for s in doc["sources"] for c in s["clusters"]]
    assert {s["name"] for s in doc["sources"]} == {"frontend", XSS_SOURCE}
    assert len(shown) == sum(c["active"] for c in clusters.values())
    for c in shown:
        key = (c["source"], c["id"])
        assert c["template"] == clusters[key]["template"]
        assert c["size"] == clusters[key]["size"]
        assert c["p99_ms"] == pytest.approx(p99[key])
        assert c["rows_per_s"] == pytest.approx(clusters[key]["rows_per_s"], rel=0.2)
        assert c["spark"] and c["new_since_ms"] is not None  # grace 0: every kind is new
    one = shown[0]
    detail = json.loads(_get(f"{base}/api/cluster?source={one['source']}&id={one['id']}")[2])
    assert detail["template"] == one["template"] and detail["series"]
    assert detail["series"][-1][1] > 0 and detail["aliases"] == []


def test_markup_in_bodies_is_escaped_json(served: tuple[SidecarServer, str, Client]) -> None:
    _, base, _ = served
    raw = _get(base + "/api/overview")[2]
    assert b"<script" not in raw and b"<img" not in raw and b"\\u003cscript\\u003e" in raw
    doc = json.loads(raw)
    hostile = next(s for s in doc["sources"] if s["name"] == XSS_SOURCE)
    texts = [c["template"] for c in hostile["clusters"]]
    assert any("<script>" in t for t in texts), texts  # the text itself, unchanged
    assert XSS_BODIES[0].startswith("<script>")
    assert to_json({"a": "</script>&"}) == b'{"a":"\\u003c/script\\u003e\\u0026"}'


def test_snapshots_are_shared() -> None:
    srv, _ = create_server(config(), FakeLabeler())
    with srv:
        now = [0.0]
        data = PageData(srv.sidecar, max_age_s=1.0, clock=lambda: now[0])
        for _ in range(5):
            data.overview()
            data.cluster("frontend", 0)
        assert data.snapshots == 1
        now[0] = 1.5
        data.overview()
        assert data.snapshots == 2


def test_a_slow_page_never_blocks_labelling(
    served: tuple[SidecarServer, str, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, base, client = served
    assert srv.page is not None
    data = srv.page.server.data
    entered, release = threading.Event(), threading.Event()
    build = data._build

    def slow(*args: Any) -> dict[str, Any]:
        entered.set()
        release.wait(30)
        return build(*args)

    monkeypatch.setattr(data, "_build", slow)
    monkeypatch.setattr(data, "max_age_s", 0.0)
    page = threading.Thread(target=_get, args=(base + "/api/overview",))
    page.start()
    try:
        assert entered.wait(10)
        out = client.label(fake_traffic(300, seed=3).select(["body", "latency_ms"]))
        assert out.num_rows > 0  # answered while the page's snapshot is held
    finally:
        release.set()
        page.join(10)


def test_page_over_tls(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = TlsConfig(pki.server_cert, pki.server_key)
    srv, _ = create_server(config(tls=tls), FakeLabeler())
    with srv:
        assert srv.page is not None and srv.page.scheme == "https"
        ctx = ssl.create_default_context(cafile=pki.ca)
        url = f"https://127.0.0.1:{srv.page.port}/api/overview"
        status, _, body = _get(url, context=ctx)
        assert status == 200 and json.loads(body)["sources"] == []
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plaintext on TLS
            urllib.request.urlopen(f"http://127.0.0.1:{srv.page.port}/", timeout=10)


def test_http_listen_forms() -> None:
    assert http_address("8080") == ("127.0.0.1", 8080)
    assert http_address(":8080") == ("127.0.0.1", 8080)
    assert http_address("0.0.0.0:80") == ("0.0.0.0", 80)
    assert http_address("[::1]:80") == ("::1", 80)
    for bad in ("host", "host:x", "1:99999", "unix:///tmp/x"):
        with pytest.raises(ValueError, match="Received: http_listen="):
            ServerConfig(http_listen=bad)
    assert ServerConfig().http_listen is None  # off unless asked


def test_static_files_ship_in_the_wheel() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "web/static/*" in pyproject["tool"]["setuptools"]["package-data"]["logclust"]
    names = {f.name for f in (resources.files("logclust.web") / "static").iterdir()}
    assert {"index.html", "cluster.html", "page.js", "page.css", "icon.svg"} <= names


def test_a_taken_page_port_is_a_clear_error(served: tuple[SidecarServer, str, Client]) -> None:
    srv, _, _ = served
    assert srv.page is not None
    cfg = config(http_listen=f"127.0.0.1:{srv.page.port}")
    with pytest.raises(OSError, match="in use"):
        create_server(cfg, FakeLabeler())
