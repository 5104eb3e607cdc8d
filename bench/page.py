"""What the page costs Label: the `bench.sidecar` replay with and without a browser on
`serve --http-listen`; prints a Markdown table.

    python -m bench.page [--replay-rows 300000] [--passes 10] [--repeats 3]
                         [--refresher browser|http]

Setup as `bench.sidecar` (a fresh `logclust serve` pinned to core 0 per run, this process
pinned to core 1 streaming pre-encoded 1,000-row batches, `--depth` in flight), on the
loghub replay with a `latency_ms` column (log-normal, so the page has p50/p99 and
sparklines to compute). Runs alternate: page off, then page on with one headless
Debian chromium (on core 1, Selenium) showing the cluster table and refreshing by itself
(every 5 s, as a user's would); `--refresher http` fetches what the page fetches from
this process instead (no browser needed). After the warm-up pass and an idle sidecar,
the timed phase (`--passes` over the replay rows, long enough for a few
refreshes) measures the sidecar's CPU seconds (labelling and, when on, serving the
page: the page's threads run in the sidecar's process, on its core) and records/s.
Label's cost is CPU seconds per 100k rows; the overhead compares medians.
"""

from __future__ import annotations

import argparse
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median
from threading import Event, Thread
from typing import Any

import numpy as np
import pyarrow as pa

from bench.harness import cli
from bench.harness.code import add_code_arg
from bench.harness.ports import free_port
from bench.harness.procs import CLIENT_CORE, SERVER_CORE, need_two_cores, pin, proc_cpu_s
from bench.harness.report import fmt
from bench.harness.sidecar import Sidecar, batches, stream
from bench.workloads import loghub_lines, replay
from logclust.client import Client
from logclust.wire import ipc

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
BROWSER_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# This checkout: the sidecar runs its package (`--http-listen` is new), also when the
# virtualenv's `logclust` script belongs to another checkout.
ROOT = str(Path(__file__).resolve().parents[1])
# The page's own refresh period (logclust/web/static/page.js REFRESH_MS).
REFRESH_S = 5.0


def table_of(lines: list[str], seed: int) -> pa.Table:
    """`body` and a log-normal `latency_ms` (median ~20 ms)."""
    rng = np.random.default_rng(seed)
    latency = rng.lognormal(3.0, 0.6, len(lines))
    return pa.table({"body": pa.array(lines, pa.string()), "latency_ms": pa.array(latency)})


def have_browser() -> bool:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


@contextmanager
def browser_on(url: str, tmp: str) -> Iterator[Any]:
    """Headless chromium showing `url` until the table is drawn; yields the driver."""
    from selenium import webdriver
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*BROWSER_FLAGS, f"--user-data-dir={tmp}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        driver.get(url)
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script("return document.querySelectorAll('tr.cluster').length")
        )
        yield driver
    finally:
        driver.quit()


def overview_fetches(driver: Any) -> int:
    script = (
        "return performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/api/overview')).length"
    )
    return int(driver.execute_script(script))


@contextmanager
def http_poller(url: str) -> Iterator[list[int]]:
    """Fetches what the page fetches every `REFRESH_S`; yields a one-item fetch count."""
    done, count = Event(), [0]

    def run() -> None:
        while not done.is_set():
            for path in ("", "static/page.js", "static/page.css", "api/overview"):
                urllib.request.urlopen(url + path, timeout=30).read()
            count[0] += 1
            done.wait(REFRESH_S)

    thread = Thread(target=run, daemon=True)
    thread.start()
    try:
        yield count
    finally:
        done.set()
        thread.join(30)


def one_run(args: argparse.Namespace, warm: list[bytes], timed: list[bytes], page: bool) -> dict:
    port = free_port()
    extra = ["--http-listen", f"127.0.0.1:{port}"] if page else []
    code = args.code or ROOT
    with Sidecar(args.bundle, SERVER_CORE, code, extra, args.quiet_s) as side:
        with Client(side.addr, timeout_s=600) as client:
            client.wait_ready(120)
            stream(client, warm, args.depth)
            side.wait_idle()
            url = f"http://127.0.0.1:{port}/"
            with _refresher(page, args.refresher, url, side.store) as fetches:
                cpu0 = proc_cpu_s(side.pid)
                wall, _ = stream(client, timed, args.depth)
                cpu = proc_cpu_s(side.pid) - cpu0
                n_fetches = fetches() if page else 0
    return {"cpu": cpu, "rate": args.rows / wall, "fetches": n_fetches, "wall": wall}


@contextmanager
def _refresher(page: bool, kind: str, url: str, tmp: str) -> Iterator[Any]:
    if not page:
        yield lambda: 0
    elif kind == "browser":
        with browser_on(url, os.path.join(tmp, "browser-profile")) as driver:
            start = overview_fetches(driver)
            yield lambda: overview_fetches(driver) - start
    else:
        with http_poller(url) as count:
            yield lambda: count[0]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__, "page")
    p.add_argument("--bundle", default=None, help="model bundle (default: models/default)")
    add_code_arg(p)
    p.add_argument("--batch", type=int, default=1000, help="rows per batch")
    p.add_argument("--depth", type=int, default=4, help="batches in flight")
    p.add_argument("--replay-rows", type=int, default=300_000)
    p.add_argument("--passes", type=int, default=10, help="passes over the timed rows")
    p.add_argument("--repeats", type=int, default=3, help="runs of each setting")
    p.add_argument("--refresher", choices=("browser", "http"), default=None)
    args = p.parse_args(argv)
    args.quiet_s = 1.0
    cli.smoke(args, batch=100, replay_rows=1000, passes=1, repeats=1, quiet_s=0.2)
    if args.refresher is None:
        args.refresher = "browser" if have_browser() else "http"
    if args.refresher == "browser" and not have_browser():
        p.error(f"--refresher browser needs selenium, {CHROMIUM} and {CHROMEDRIVER}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    need_two_cores()
    pin(CLIENT_CORE)
    with cli.output(args, "page") as out:
        out.header(args.bundle, sidecar_code=args.code or "this checkout")
        out.fact("refresher", args.refresher)
        one_pass = len(loghub_lines(smoke=args.smoke))
        lines = replay(one_pass + args.replay_rows, seed=0, smoke=args.smoke)
        encode = ipc.encode_ipc
        warm = [encode(t) for t in batches(table_of(lines[:one_pass], 0), args.batch)]
        timed = [encode(t) for t in batches(table_of(lines[one_pass:], 1), args.batch)]
        timed *= args.passes
        args.rows = (len(lines) - one_pass) * args.passes
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(args.repeats):
            for page in (False, True):
                runs[page].append(one_run(args, warm, timed, page))
        table = out.table(
            ["page", "runs", "sidecar CPU s / 100k rows", "records/s", "page refreshes"],
            "Label's cost with the page open",
            f"loghub replay + latency_ms, {args.rows:,} rows timed in {args.batch:,}-row "
            f"batches; sidecar on core {SERVER_CORE}, client and {args.refresher} on core "
            f"{CLIENT_CORE}; medians of {args.repeats} alternating runs each.",
        )
        cost = {}
        for page, label in ((False, "off"), (True, f"on, one {args.refresher} refreshing")):
            rs = runs[page]
            cost[page] = median(r["cpu"] for r in rs) / args.rows * 1e5
            table.add(
                label,
                len(rs),
                fmt(cost[page], ".3f"),
                fmt(median(r["rate"] for r in rs), ",.0f"),
                fmt(median(r["fetches"] for r in rs), ".0f"),
            )
        out.show(table)
        for page in (False, True):
            each = ", ".join(f"{r['cpu'] / args.rows * 1e5:.3f}" for r in runs[page])
            out.line(f"page {'on' if page else 'off'}: CPU s / 100k rows of each run: {each}")
        out.line(f"overhead of the page on Label's cost: {(cost[True] / cost[False] - 1):+.1%}")


if __name__ == "__main__":
    main()
