"""Handlers of the commands that run a sidecar in this process: `serve`, `demo`.

`logclust.cli.main` builds the one parser; each handler takes the parsed namespace and
returns an exit code. The commands that talk to a running sidecar are in
`logclust.cli.remote`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from logclust.cli.defaults import SERVE_ENCODER_BATCH  # noqa: F401 - read by bench.hot_path
from logclust.cli.demo import OTLP_EXTRA_MISSING, otlp_sdk_available, run_demo
from logclust.cli.settings import default_of
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.labeler import Labeler
from logclust.embed.bundle import Bundle
from logclust.embed.variant import choose_variant
from logclust.otlp.config import OtlpConfig
from logclust.server.app import serve
from logclust.server.config import ServerConfig, TlsConfig, check_listen
from logclust.server.memory import keep_pandas_out, lean_process_memory
from logclust.sidecar.config import SamplingConfig, StreamLabelerConfig

logger = logging.getLogger(__name__)


def _setup_logging() -> None:
    # A server reports where it listens and when it stops, even without -v.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ours = logging.getLogger("logclust")
    if ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)


def otlp_config(args: argparse.Namespace) -> OtlpConfig | None:
    """The OTLP settings of `serve`'s flags; None when no OTLP receiver is asked for."""
    if args.otlp_listen is None and args.otlp_http_listen is None:
        for flag in ("otlp_forward", "otlp_forward_ca", "otlp_forward_cert", "otlp_forward_key"):
            if getattr(args, flag) is not None:
                name = "--" + flag.replace("_", "-")
                raise ValueError(f"{name} needs --otlp-listen or --otlp-http-listen")
        if args.otlp_forward_sampled:
            raise ValueError("--otlp-forward-sampled needs --otlp-forward")
        return None
    return OtlpConfig(
        listen=args.otlp_listen,
        http_listen=args.otlp_http_listen,
        forward=args.otlp_forward,
        forward_ca_file=args.otlp_forward_ca,
        forward_cert_file=args.otlp_forward_cert,
        forward_key_file=args.otlp_forward_key,
        forward_sampled=args.otlp_forward_sampled,
        grpc_plaintext=args.otlp_plaintext,
        http_plaintext=args.otlp_http_plaintext,
        queue_records=args.otlp_queue_records,
        body_attribute=args.otlp_body_attribute,
        source_attribute=args.otlp_source_attribute,
        latency_attribute=args.otlp_latency_attribute,
    )


def server_tls(args: argparse.Namespace) -> TlsConfig | None:
    """`--tls-cert/--tls-key/--tls-client-ca` as settings; None without a certificate."""
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ValueError(
            f"TLS needs both --tls-cert and --tls-key. Received: {args.tls_cert!r}, "
            f"{args.tls_key!r}"
        )
    return TlsConfig(args.tls_cert, args.tls_key, args.tls_client_ca)


def metrics_address(args: argparse.Namespace) -> tuple[str, int | None]:
    """(host, port) of the metrics endpoint: `--metrics-listen`, else `--metrics-port`
    on `ServerConfig.metrics_host` (loopback)."""
    if args.metrics_listen is None:
        return default_of(ServerConfig, "metrics_host"), args.metrics_port
    check_listen(args.metrics_listen, "--metrics-listen")
    if args.metrics_listen.startswith("unix:"):
        raise ValueError(f"--metrics-listen must be HOST:PORT. Received: {args.metrics_listen!r}")
    host, _, port = args.metrics_listen.rpartition(":")
    return host.strip("[]"), int(port)


def cmd_serve(args: argparse.Namespace) -> int:
    """`logclust serve`: runs until SIGTERM/SIGINT."""
    _setup_logging()
    lean_process_memory()
    keep_pandas_out()
    metrics_host, metrics_port = metrics_address(args)
    # Sizes given as flags win over the memory budget's.
    sizes = {
        "cache_size": args.cache_size,
        "mask_cache_size": args.mask_cache_size,
        "reservoir_size": args.reservoir_size,
    }
    given = {name: value for name, value in sizes.items() if value is not None}
    labeler = StreamLabelerConfig(
        window_s=int(args.window),
        retention_s=int(args.retention),
        max_latency_ms=args.max_latency_ms,
        rate_window_s=int(args.rate_window),
        new_kind_grace_s=int(args.new_kind_grace),
        max_sources=args.max_sources,
        clusters=StreamClusterConfig(
            threshold=args.threshold,
            group_threshold=args.group_threshold,
            prose=args.prose,
            line_groups=args.line_groups,
            keep_headers=args.keep_headers,
            source_thresholds={k: float(v) for k, v in _pairs(args.source_threshold).items()},
            max_clusters=args.max_clusters,
            **given,
        ),
        log_formats=_log_formats(args.log_format),
        sampling=sampling_config(args),
    )
    config = ServerConfig(
        listen=args.listen,
        store_dir=args.store,
        store_recover=args.store_recover,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        http_listen=args.http_listen,
        tls=server_tls(args),
        max_inflight_batches=args.max_inflight_batches,
        max_inflight_bytes=args.max_inflight_bytes,
        label_threads=args.label_threads,
        stream_idle_timeout_s=args.stream_idle_timeout,
        max_decompressed_bytes=args.max_decompressed_bytes,
        flush_interval_s=args.flush_interval,
        memory_budget_mb=args.memory_budget_mb or None,  # 0: no budget
        keep_sizes=frozenset(given),
        labeler=labeler,
        otlp=otlp_config(args),
        encoder_variant=args.encoder_variant,
        catalog=args.catalog,
        catalog_poll_s=args.catalog_poll,
    )
    serve(config, serving_labeler(args.bundle, config.encoder_variant, args.encoder_batch))
    return 0


def serving_labeler(bundle_path: str | None, variant: str, batch_size: int) -> Labeler:
    """The bundle's `Labeler` with the encoder variant `variant` (`auto`: the faster
    here, timed at start); logs the variant and, when timed, the timings."""
    bundle = Bundle.load(bundle_path)
    chosen = choose_variant(bundle, variant)
    logger.info("%s", chosen.describe())
    return Labeler(bundle, chosen.variant, batch_size=batch_size)


def sampling_config(args: argparse.Namespace) -> SamplingConfig:
    """The storage budget of `--sample-fraction`, `--sample SOURCE=F` and the window flags.

    Raises:
        ValueError: a `--sample` item that is not SOURCE=F with F a number (the range of F
            is checked by `SamplingConfig`).
    """
    fractions = {}
    for source, value in _pairs(args.sample).items():
        try:
            fractions[source] = float(value)
        except ValueError:
            raise ValueError(
                f"--sample needs SOURCE=F with F a number. Received: {source}={value}"
            ) from None
    return SamplingConfig(
        fraction=args.sample_fraction,
        source_fractions=fractions,
        window_rows=args.sample_window_rows,
        window_s=float(args.sample_window),
        slot_s=float(args.sample_slot),
        seed=args.sample_seed,
    )


def _pairs(items: list[str]) -> dict[str, str]:
    """`NAME=VALUE` flags as a dict.

    Raises:
        ValueError: an item without `=`.
    """
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"Expected NAME=VALUE. Received: {item!r}")
        out[name] = value
    return out


def _log_formats(items: list[str]) -> dict[str, str]:
    """`--log-format` flags: `SOURCE=FORMAT`, or a bare FORMAT for every source ("*").

    A format string holds `<Field>`s and may hold `=`, so only a prefix without `<`
    names a source.
    """
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if sep and name and "<" not in name:
            out[name] = value
        else:
            out["*"] = item
    return out


def cmd_demo(args: argparse.Namespace) -> int:
    """`logclust demo`: exits 1 when a demo check (ARI, p99 accuracy, slowest) fails."""
    if args.otlp and not otlp_sdk_available():
        print(OTLP_EXTRA_MISSING, file=sys.stderr)
        return 2
    report = run_demo(
        rows=args.rows,
        plot=args.plot,
        bundle=args.bundle,
        batch_size=args.batch_size,
        otlp=args.otlp,
    )
    print(report.render())
    return 0 if report.passed else 1
