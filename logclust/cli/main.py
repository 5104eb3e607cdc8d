"""The `logclust` command: embed, label, and the sidecar commands (serve, send, latency,
clusters, demo)."""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path

from logclust.cli import _threads  # noqa: F401  (first: sets BLAS threads before numpy loads)
from logclust.cli.catalog_args import add_catalog_parser
from logclust.cli.defaults import FORMATS, SERVE_ENCODER_BATCH
from logclust.cli.settings import FieldFlags, bind_prefixed
from logclust.client import DEFAULT_ADDR
from logclust.cluster.config import StreamClusterConfig
from logclust.otlp.config import OtlpConfig
from logclust.rpc.tls import TlsConfig
from logclust.server.config import ENCODER_VARIANTS, ServerConfig
from logclust.sidecar.config import SamplingConfig, StreamLabelerConfig
from logclust.sidecar.store import MAX_FLUSH_INTERVAL_S, StoreError
from logclust.wire.contract import DEFAULT_QUANTILES

TRAIN_MOVED = (
    "logclust train: training is not part of the installed package; from a checkout run "
    "`python -m training --data ../shared/data/loghub-2k --out models/default "
    "--work runs/default --config training/default.toml`"
)

FLEET_ADDR_HELP = (
    f"sidecar address (default {DEFAULT_ADDR}); repeat it to ask a fleet (docs/fleet.md)"
)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """`'10s'`, `'15m'`, `'2h'`, `'1d'`, `'250ms'` or plain seconds -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)?\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a duration like 10s, 15m, 2h. Received: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def parse_quantiles(text: str) -> list[float]:
    """`'0.5,0.99'` -> `[0.5, 0.99]`, each in [0, 1]."""
    try:
        qs = [float(q) for q in text.split(",") if q.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"quantiles are numbers. Received: {text!r}") from e
    if not qs or any(not 0.0 <= q <= 1.0 for q in qs):
        raise argparse.ArgumentTypeError(f"quantiles must be in [0, 1]. Received: {text!r}")
    return qs


def handler(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """The handler `name` of `logclust.cli.<module>`, imported when its command runs: the
    client commands (`send`, `latency`, ...) start without the model runtime and the
    server, which they never use, so they start sooner (`tests/test_imports.py` keeps
    those modules out)."""

    def run(args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(f"logclust.cli.{module}"), name)(args) or 0)

    run.__name__ = name
    return run


def cmd_train(args: argparse.Namespace) -> int:
    """`logclust train`: points to `python -m training` (training lives outside the wheel)."""
    print(TRAIN_MOVED, file=sys.stderr)
    return 2


def _add_otlp_flags(p: argparse.ArgumentParser) -> None:
    """`serve` flags of the OTLP logs endpoints (README "OpenTelemetry (OTLP)"); each
    `--otlp-X` sets `OtlpConfig.X` and takes its default."""
    g = p.add_argument_group("OpenTelemetry (OTLP) logs")
    g.add_argument("--otlp-listen", default=None, help="OTLP/gRPC host:port (default: off)")
    g.add_argument("--otlp-http-listen", default=None, help="OTLP/HTTP host:port (/v1/logs)")
    g.add_argument("--otlp-forward", default=None, help="next hop, OTLP/gRPC [https://]host:port")
    g.add_argument("--otlp-queue-records", type=int, help="forwarding queue bound (records)")
    g.add_argument("--otlp-body-attribute", default=None, help="attribute with the text")
    g.add_argument("--otlp-source-attribute", help="resource attribute")
    g.add_argument("--otlp-latency-attribute", help="NAME or NAME:UNIT (ns, us, ms, s)")
    otlp = FieldFlags(g, OtlpConfig)
    otlp(
        "--otlp-plaintext",
        "grpc_plaintext",
        action="store_true",
        help="serve OTLP/gRPC in plaintext even with --tls-cert (default: the server's TLS)",
    )
    otlp(
        "--otlp-http-plaintext",
        "http_plaintext",
        action="store_true",
        help="serve OTLP/HTTP in plaintext even with --tls-cert (default: the server's TLS)",
    )
    otlp(
        "--otlp-forward-ca",
        "forward_ca_file",
        help="dial the next hop with TLS, trusting this CA (PEM); an https:// --otlp-forward "
        "dials TLS with the system's roots",
    )
    otlp(
        "--otlp-forward-sampled",
        "forward_sampled",
        action="store_true",
        help="forward only the rows the storage budget keeps, with logclust.sample_weight "
        "(needs --sample-fraction or --sample)",
    )
    otlp("--otlp-forward-cert", "forward_cert_file", help="client cert for the next hop (PEM)")
    otlp("--otlp-forward-key", "forward_key_file", help="client key for the next hop (PEM)")
    bind_prefixed(g, OtlpConfig, prefix="otlp_")


def _add_security_flags(p: argparse.ArgumentParser) -> None:
    """`serve` flags of TLS, limits and the metrics address (README "Security")."""
    g = p.add_argument_group("security and limits")
    tls, server = FieldFlags(g, TlsConfig), FieldFlags(g, ServerConfig)
    tls("--tls-cert", "cert_file", default=None, help="server certificate chain (PEM)")
    tls("--tls-key", "key_file", default=None, help="server private key (PEM)")
    tls("--tls-client-ca", "client_ca_file", help="CA of client certs: requires mTLS")
    server(
        "--metrics-listen",
        "metrics_host",
        default=None,
        metavar="HOST:PORT",
        help="Prometheus endpoint",
    )
    server("--max-inflight-batches", "max_inflight_batches", type=int)
    server("--max-inflight-bytes", "max_inflight_bytes", type=int)
    server(
        "--label-threads",
        "label_threads",
        type=int,
        help="batches labelled at once, shared fairly by streams (default: usable cores)",
    )
    server("--stream-idle-timeout", "stream_idle_timeout_s", type=parse_duration)
    server("--max-decompressed-bytes", "max_decompressed_bytes", type=int)


def _add_clustering_flags(p: argparse.ArgumentParser) -> None:
    """`serve` flags of the clustering distance and of raw log formats."""
    clusters = FieldFlags(p, StreamClusterConfig)
    clusters(
        "--threshold",
        "threshold",
        type=float,
        help="clustering distance for every source (default: the bundle's calibrated one; "
        "larger gives coarser groups)",
    )
    clusters(
        "--group-threshold",
        "group_threshold",
        type=float,
        help="distance within which a new cluster joins a group of the same meaning, and a "
        "prose text a prose cluster (default: the bundle's calibrated one; docs/sidecar.md)",
    )
    clusters(
        "--prose",
        "prose",
        action=argparse.BooleanOptionalAction,
        help="place free text by meaning: its clusters are its groups (default: %(default)s)",
    )
    clusters(
        "--line-groups",
        "line_groups",
        action=argparse.BooleanOptionalAction,
        help="group log templates by meaning too; each new template then costs one encoder "
        "pass (default: %(default)s)",
    )
    clusters(
        "--keep-headers",
        "keep_headers",
        action=argparse.BooleanOptionalAction,
        help="keep a log line's header (time, host, level, component) in its template and "
        "embedding; without it, lines are clustered by their message (default: %(default)s)",
    )
    clusters(
        "--source-threshold",
        "source_thresholds",
        action="append",
        default=[],
        metavar="SOURCE=X",
        help="clustering distance of one source (repeatable)",
    )
    FieldFlags(p, StreamLabelerConfig)(
        "--log-format",
        "log_formats",
        action="append",
        default=[],
        metavar="[SOURCE=]FORMAT",
        help="raw log lines with headers: a preset (hdfs, openstack, syslog, ...) or a format "
        "such as '<Date> <Time> <Level> <Content>', for one source or all (repeatable)",
    )


def _add_memory_flags(p: argparse.ArgumentParser) -> None:
    """`serve` flags of the memory budget and of the sizes it sets (README "Memory budget")."""
    g = p.add_argument_group("memory")
    FieldFlags(g, ServerConfig)(
        "--memory-budget-mb",
        "memory_budget_mb",
        type=int,
        help="RSS budget of the process in MiB: sizes the caches, reservoirs, clusters and "
        "latency windows for --max-sources (default: %(default)s; 0: no budget)",
    )
    FieldFlags(g, StreamLabelerConfig)("--max-sources", "max_sources", type=int)
    clusters = FieldFlags(g, StreamClusterConfig)
    # None: the size the budget gives (the field's default without a budget).
    clusters("--cache-size", "cache_size", type=int, default=None, help="texts (default: budget's)")
    clusters(
        "--mask-cache-size",
        "mask_cache_size",
        type=int,
        default=None,
        help="text shapes (default: budget's)",
    )
    clusters("--reservoir-size", "reservoir_size", type=int, default=None, help="rows a source")
    clusters("--max-clusters", "max_clusters", type=int, help="per source")


def _add_sampling_flags(p: argparse.ArgumentParser) -> None:
    """`serve` flags of the storage budget (docs/sampling.md)."""
    g = p.add_argument_group("sampling by cluster (docs/sampling.md)")
    sampling = FieldFlags(g, SamplingConfig)
    sampling(
        "--sample-fraction",
        "fraction",
        type=float,
        metavar="F",
        help="share of rows to keep on average, every source, in (0, 1]: answers get keep "
        "and sample_weight (default: off)",
    )
    sampling(
        "--sample",
        "source_fractions",
        action="append",
        default=[],
        metavar="SOURCE=F",
        help="share of rows to keep for one source, over --sample-fraction (repeatable)",
    )
    sampling("--sample-window-rows", "window_rows", type=int)
    sampling("--sample-window", "window_s", type=parse_duration)
    sampling("--sample-slot", "slot_s", type=parse_duration)
    sampling("--sample-seed", "seed", type=int)


def _add_client_tls_flags(p: argparse.ArgumentParser) -> None:
    """`--tls-ca/--tls-cert/--tls-key` of the commands that talk to a sidecar."""
    p.add_argument("--tls-ca", default=None, help="connect with TLS, trusting this CA (PEM)")
    p.add_argument("--tls-cert", default=None, help="client certificate for mTLS (PEM)")
    p.add_argument("--tls-key", default=None, help="client key for mTLS (PEM)")


def _add_serve(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`logclust serve`: its flags set the fields of `ServerConfig` (and of the configs
    inside it), whose defaults they take."""
    p = subparsers.add_parser("serve", help="run the sidecar (gRPC)")
    server, labeler = FieldFlags(p, ServerConfig), FieldFlags(p, StreamLabelerConfig)
    server("--listen", "listen", help="host:port or unix:///path")
    p.add_argument("--bundle", default=None, help="model bundle (default: the built-in one)")
    server("--store", "store_dir", help="state directory (default: memory only)")
    server(
        "--store-recover",
        "store_recover",
        action="store_true",
        help="move a damaged store file aside (.damaged-<time>) and start empty",
    )
    server("--metrics-port", "metrics_port", type=int, help="Prometheus HTTP port")
    server("--catalog", "catalog", help="the fleet's catalog file (docs/fleet.md)")
    server("--catalog-poll", "catalog_poll_s", type=parse_duration)
    server(
        "--http-listen",
        "http_listen",
        metavar="[HOST:]PORT",
        help="serve the page (clusters, latency, new kinds) here; default host 127.0.0.1",
    )
    server(
        "--flush-interval",
        "flush_interval_s",
        type=float,
        help=f"seconds between flushes to the store, at most {MAX_FLUSH_INTERVAL_S:g}",
    )
    labeler("--window", "window_s", type=parse_duration)
    labeler("--retention", "retention_s", type=parse_duration)
    server("--encoder-variant", "encoder_variant", choices=ENCODER_VARIANTS)
    labeler("--max-latency-ms", "max_latency_ms", type=float, help="larger: not recorded")
    labeler("--rate-window", "rate_window_s", type=parse_duration)
    labeler("--new-kind-grace", "new_kind_grace_s", type=parse_duration)
    p.add_argument(
        "--encoder-batch",
        type=int,
        default=SERVE_ENCODER_BATCH,
        help="rows per encoder call (default %(default)s)",
    )
    _add_clustering_flags(p)
    _add_memory_flags(p)
    _add_sampling_flags(p)
    _add_otlp_flags(p)
    _add_security_flags(p)
    p.set_defaults(func=handler("service", "cmd_serve"))


def _add_send(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("send", help="label a file through a sidecar")
    p.add_argument("input", help="text (one record per line), .csv, .parquet or .arrow file")
    p.add_argument("--addr", default=DEFAULT_ADDR)
    p.add_argument("--out", default=None, help="write labelled rows (.parquet, .csv, .arrow)")
    p.add_argument("--batch-size", type=int, default=10_000)
    _add_log_format(p)
    _add_client_tls_flags(p)
    p.set_defaults(func=handler("remote", "cmd_send"))


def _add_queries(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`latency`, `clusters` and `forget`: the queries of a running sidecar."""
    p = subparsers.add_parser("latency", help="per-cluster latency quantiles")
    p.add_argument("--addr", action="append", help=FLEET_ADDR_HELP)
    p.add_argument("--since", type=parse_duration, default=900.0, help="e.g. 15m (default)")
    p.add_argument("--window", type=parse_duration, default=None, help="e.g. 10s, 1m")
    p.add_argument("--quantiles", type=parse_quantiles, default=list(DEFAULT_QUANTILES))
    p.add_argument("--source", default=None)
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--plot", default=None, help="PNG of p99 per cluster over time")
    p.add_argument(
        "--by",
        choices=("cluster", "group"),
        default="cluster",
        help="a row per cluster, or per group of clusters that mean the same (default: cluster)",
    )
    _add_client_tls_flags(p)
    p.set_defaults(func=handler("remote", "cmd_latency"))

    p = subparsers.add_parser("clusters", help="clusters and their descriptions")
    p.add_argument("--addr", action="append", help=FLEET_ADDR_HELP)
    p.add_argument("--source", default=None)
    p.add_argument(
        "--by",
        choices=("cluster", "group"),
        default="cluster",
        help="a row per cluster (with its group_id), or per group: its clusters, their "
        "templates and a few exemplars (default: cluster)",
    )
    p.add_argument("--format", choices=FORMATS, default="table")
    _add_client_tls_flags(p)
    p.set_defaults(func=handler("remote", "cmd_clusters"))

    p = subparsers.add_parser("forget", help="drop a source: its clusters, latency and slot")
    p.add_argument("--addr", default=DEFAULT_ADDR)
    p.add_argument("--source", required=True)
    _add_client_tls_flags(p)
    p.set_defaults(func=handler("remote", "cmd_forget"))


def _add_demo(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("demo", help="Online Boutique-like traffic through a sidecar")
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--plot", default="logclust-demo-p99.png", help="p99-over-time PNG")
    p.add_argument("--bundle", default=None, help="model bundle (default: the built-in one)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument(
        "--otlp",
        action="store_true",
        help="send with the OpenTelemetry SDK over OTLP/gRPC (needs logclust[otel])",
    )
    p.set_defaults(func=handler("service", "cmd_demo"))


def _add_service_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Registers `serve`, `send`, `latency`, `clusters`, `forget` and `demo`."""
    _add_serve(subparsers)
    _add_send(subparsers)
    _add_queries(subparsers)
    _add_demo(subparsers)


def _add_log_format(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-format",
        default=None,
        metavar="FORMAT",
        help="split raw log lines: a preset (hdfs, openstack, syslog, ...) or a format such as "
        "'<Date> <Time> <Level> <Content>'; the content is clustered, header fields become "
        "log_<field> columns",
    )


def build_parser() -> argparse.ArgumentParser:
    """The one parser of every `logclust` command."""
    p = argparse.ArgumentParser(prog="logclust", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train", help="moved: run `python -m training` from a checkout", add_help=False
    )
    t.set_defaults(func=cmd_train)

    for name, what in (("embed", "embedding"), ("label", "cluster_id")):
        s = sub.add_parser(name, help=f"add a {what} column to a file")
        s.add_argument(
            "--input",
            type=Path,
            required=True,
            help="text file (one record per line) or Parquet/Arrow/CSV with body",
        )
        s.add_argument(
            "--output", type=Path, required=True, help="file to write (.csv, .arrow, else Parquet)"
        )
        s.add_argument("--bundle", type=Path, help="bundle folder (default: shipped model)")
        s.add_argument("--variant", choices=("f32", "int8"), help="encoder variant")
        _add_log_format(s)
        if name == "label":
            s.add_argument("--k", type=int, help="fit k clusters on the input first")
            s.add_argument(
                "--fit",
                action="store_true",
                help="fit clusters on the input with k chosen automatically",
            )
            s.add_argument(
                "--engine",
                choices=("local", "spark"),
                default="local",
                help="local: this process; spark: Apache Spark (--input may be a glob of "
                "Parquet files, --output a folder)",
            )
            s.add_argument("--master", help="Spark master (default: spark-submit's or local[*])")
        s.set_defaults(func=handler("offline", f"cmd_{name}"))

    _add_service_commands(sub)
    add_catalog_parser(sub, handler)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # `logclust train ...` takes any arguments, only to point to `python -m training`.
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except StoreError as e:  # not a usage error: the file and what to do, no traceback
        print(f"logclust {args.command}: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"logclust {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
