"""The group level (`group_id`) on a mixed HTTP workload, through a real sidecar.

    python -m bench.groups [--bundle DIR] [--rows 6000] [--prose-share 0.3] [--demo-rows 20000]
                           [--group-threshold X] [--seed 0] [--seeds N] [--topic-sets N]
                           [--topic-set-rows 1800]

A fresh `logclust serve` (`bench.harness.Sidecar`, a temporary store) labels, k never
given, a stream of one source mixing:

- the structured kinds of `logclust demo`'s traffic (forms, JSON, GraphQL, XML; not its
  free-text `feedback`), plus two GraphQL operations that share their keys, two sent as
  persisted queries (the operation's name and a hash, no query text) and two SOAP
  operations that share an envelope;
- free text on several topics, two ways in two runs: support messages on 4 topics, each
  written many ways (`training.evaluate.groups.prose_messages`: openings, synonyms,
  fillers, word order, second sentences, typos, lower case), then whole sentences on 5
  other topics (`sentence_messages`: 12 sentences a topic, with the same openings,
  closings, case and typos).

Prints `group_id` ARI against the true kind (targets: >= 0.95) and among the free text
alone (all of it, then its first `LEARNING` rows, while topics are learned, and the
rest), groups per free-text topic (<= 2; every group that holds one of its rows, and the
groups that hold 5% or more of them), structured kinds merged (pairs of kinds that share
a group, whether the cluster level or the group level joined them; 0), and prose's
cluster count. Then `logclust demo`'s traffic (`logclust.cli.traffic.generate_traffic`) on a
second sidecar: clusters and groups of its `feedback` kind (target <= 5).

With `--seeds N`, also the mixed workloads' group ARI for the N seeds from `--seed` on,
a fresh sidecar each, with their mean: one seed's stream can find its topics or miss
them, and a change to the free text is judged over many.

With `--topic-sets N`, also free text alone: `--topic-set-rows` (1,800) rows of each of
`TOPIC_SETS` (both message sets whole, their subsets of 1, 2 and 3 topics), 150-row
batches, for the N seeds from `--seed` on, a fresh sidecar each: ARI against the topics
(mean and worst seed), groups per topic (every group holding one of its rows, and those
holding 5%+), and the mean ARI over the sets of two or more topics.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa
from sklearn.metrics import adjusted_rand_score

from bench.harness import cli
from bench.harness.procs import SERVER_CORE
from bench.harness.report import Output, fmt
from bench.harness.sidecar import Sidecar
from logclust.cli.traffic import KINDS, generate_traffic
from logclust.client import Client
from logclust.sidecar.stream_labeler import StreamLabeler
from training.evaluate.groups import prose_messages, sentence_messages

_GQL = (
    '{"operationName":"%s","query":"query %s($id: ID!, $first: Int) '
    '{ %s(id: $id, first: $first) { %s } }","variables":{"id":"%s","first":%d}}'
)
_SOAP = (
    '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header>'
    "<auth><token>%s</token></auth></soap:Header><soap:Body><%s><account>%s</account>"
    "<amount>%d</amount></%s></soap:Body></soap:Envelope>"
)

# GraphQL persisted queries (Apollo's APQ): the client sends the query's hash, not its text.
_APQ = (
    '{"operationName":"%s","variables":{"cartId":"%s","limit":%d},'
    '"extensions":{"persistedQuery":{"version":1,"sha256Hash":"%s"}}}'
)
_HASHES = {"GetCart": "9f86d081884c7d65", "EmptyCart": "60303ae22b998861"}


def _extra(rng: np.random.Generator, kind: str) -> str:
    ident = "".join(rng.choice(list("abcdef0123456789"), 12))
    n = int(rng.integers(1, 500))
    if kind == "gql_user":
        return _GQL % ("GetUser", "GetUser", "user", "name email avatar", ident, n)
    if kind == "gql_orders":
        return _GQL % ("ListOrders", "ListOrders", "orders", "total status items", ident, n)
    if kind.startswith("apq_"):  # a persisted query: the operation's name, no query text
        op = "GetCart" if kind == "apq_cart" else "EmptyCart"
        return _APQ % (op, ident, n, _HASHES[op])
    op = "GetBalance" if kind == "soap_balance" else "TransferFunds"
    return _SOAP % (ident, op, ident, n, op)


EXTRA = ("gql_user", "gql_orders", "soap_balance", "soap_transfer", "apq_cart", "apq_empty")
# Free-text rows counted as the learning phase (the first refits of the topics).
LEARNING = 512


def workload(
    rows: int, prose_share: float, seed: int, sentences: bool = False
) -> tuple[list[str], list[str]]:
    """`(bodies, true kinds)`, shuffled; the free text from `prose_messages`, or from
    `sentence_messages` when `sentences`."""
    rng = np.random.default_rng(seed)
    n_prose = int(rows * prose_share)
    n_extra = (rows - n_prose) // 5
    kinds = tuple(k for k in KINDS if k != "feedback")
    demo = generate_traffic(rows - n_prose - n_extra, seed=seed, kinds=kinds)
    bodies = demo.column("body").to_pylist()
    truth = demo.column("kind").to_pylist()
    extra = [str(k) for k in rng.choice(EXTRA, n_extra)]
    bodies += [_extra(rng, k) for k in extra]
    truth += extra
    prose, topics = (sentence_messages if sentences else prose_messages)(n_prose, seed=seed)
    bodies += prose
    truth += [f"prose:{t}" for t in topics]
    order = rng.permutation(len(bodies))
    return [bodies[i] for i in order], [truth[i] for i in order]


def label(
    bundle: str | None, bodies: list[str], batch: int, extra: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """`(cluster ids, group ids)` from a fresh sidecar (`extra`: more `serve` flags)."""
    with Sidecar(bundle, SERVER_CORE, extra=extra) as side, Client(side.addr) as client:
        client.wait_ready(120)
        out = client.label(pa.table({"body": bodies}), batch)
    return out.column("cluster_id").to_numpy(), out.column("group_id").to_numpy()


def merged_kinds(groups: np.ndarray, truth: np.ndarray) -> int:
    """Pairs of structured kinds that share a group, whichever level joined them (the
    cluster level's merges are the group level's too)."""
    kinds = sorted(k for k in set(truth.tolist()) if not k.startswith("prose:"))
    count = 0
    for i, a in enumerate(kinds):
        for b in kinds[i + 1 :]:
            count += int(bool(set(groups[truth == a].tolist()) & set(groups[truth == b].tolist())))
    return count


def phases(groups: np.ndarray, truth: np.ndarray) -> str:
    """Free-text ARI over its first `LEARNING` rows and over the rest (stream order)."""
    a, b = slice(None, LEARNING), slice(LEARNING, None)
    first = f"{adjusted_rand_score(truth[a], groups[a]):.3f}"
    if groups.size <= LEARNING:
        return f"{first} / -"
    return f"{first} / {adjusted_rand_score(truth[b], groups[b]):.3f}"


def per_topic(groups: np.ndarray, truth: np.ndarray, share: float = 0.0) -> list[int]:
    """Groups holding more than `share` of each free-text topic's rows."""
    out = []
    for topic in sorted({t for t in truth.tolist() if t.startswith("prose:")}):
        _, counts = np.unique(groups[truth == topic], return_counts=True)
        out.append(int((counts > share * counts.sum()).sum()))
    return out


def prose_rate(bundle: str | None, rows: int, batch: int = 1000) -> float:
    """Rows of free text alone placed a second of CPU, in this process (`StreamLabeler`,
    one source, `batch`-row batches of `prose_messages`): what a stream of support
    messages costs the sidecar's clustering."""
    texts, _ = prose_messages(rows, seed=3)
    labeler = StreamLabeler.load(bundle)
    start = time.process_time()
    for i in range(0, len(texts), batch):
        labeler.label(texts[i : i + batch], source="prose")
    return len(texts) / (time.process_time() - start)


# The mixed workloads: their free text, support messages or whole written sentences.
MIXED = (("support messages", False), ("written sentences", True))

# Free text alone: (message set, topics; None for all of the set's).
TOPIC_SETS: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("support", None),
    ("sentences", None),
    ("support", ("damaged", "late")),
    ("sentences", ("billing", "cancel")),
    ("sentences", ("crash", "address", "praise")),
    ("support", ("refund",)),
    ("support", ("password", "refund", "late")),
    ("sentences", ("billing",)),
    ("sentences", ("cancel", "praise")),
)
_TOPIC_SET_BATCH = 150


def topic_set_table(out: Output, args: argparse.Namespace, extra: list[str]) -> None:
    """Free text alone, each of `TOPIC_SETS` for `args.topic_sets` seeds (see the module
    docstring)."""
    seeds = list(range(args.seed, args.seed + args.topic_sets))
    table = out.table(
        ["free text alone", "topics", "ARI: mean (worst seed)", "groups per topic: mean (max)",
         "... holding 5%+ of it"],
        title=f"Free text alone, seeds {seeds[0]}-{seeds[-1]}",
        note=f"{args.topic_set_rows} rows, {_TOPIC_SET_BATCH}-row batches, k never given, "
        "a fresh sidecar each",
    )  # fmt: skip
    means = []
    for kind, topics in TOPIC_SETS:
        make = prose_messages if kind == "support" else sentence_messages
        scores: list[float] = []
        every: list[int] = []
        most: list[int] = []
        for seed in seeds:
            texts, drawn = make(args.topic_set_rows, seed=seed, topics=topics)
            truth = np.array([f"prose:{t}" for t in drawn])
            _, groups = label(args.bundle, texts, _TOPIC_SET_BATCH, extra)
            if topics is None or len(topics) > 1:
                scores.append(adjusted_rand_score(truth, groups))
            every += per_topic(groups, truth)
            most += per_topic(groups, truth, 0.05)
        if scores:
            means.append(float(np.mean(scores)))
        table.add(
            f"{kind}: {' + '.join(topics) if topics else 'all'}",
            len(topics) if topics else len(set(drawn)),
            f"{np.mean(scores):.3f} ({min(scores):.3f})" if scores else "",
            f"{np.mean(every):.2f} ({max(every)})",
            f"{np.mean(most):.2f} ({max(most)})",
        )
    table.add("mean over the sets of 2+ topics", "", f"{np.mean(means):.3f}", "", "")
    out.show(table)


def seed_table(out: Output, args: argparse.Namespace, extra: list[str]) -> None:
    """Group ARI of both mixed workloads for `args.seeds` seeds from `args.seed`, each
    through a fresh sidecar, and their mean."""
    seeds = list(range(args.seed, args.seed + args.seeds))
    table = out.table(
        ["workload", *(f"seed {s}" for s in seeds), "mean"],
        title="Group ARI over seeds",
        note="one source, k never given, a fresh sidecar each",
    )
    for name, sentences in MIXED:
        scores = []
        for seed in seeds:
            bodies, truth = workload(args.rows, args.prose_share, seed, sentences)
            _, groups = label(args.bundle, bodies, args.batch, extra)
            scores.append(adjusted_rand_score(truth, groups))
        table.add(
            f"mixed HTTP + {name}", *(fmt(x, ".3f") for x in scores), fmt(np.mean(scores), ".3f")
        )
    out.show(table)


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__, "groups")
    p.add_argument("--bundle", default=None)
    p.add_argument("--rows", type=int, default=6000)
    p.add_argument("--prose-share", type=float, default=0.3)
    p.add_argument("--demo-rows", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prose-rows", type=int, default=30_000, help="for the free-text rate")
    p.add_argument("--seeds", type=int, default=0, help="also group ARI over this many seeds")
    p.add_argument(
        "--topic-sets", type=int, default=0, help="also free text alone, this many seeds a set"
    )
    p.add_argument("--topic-set-rows", type=int, default=1800)
    p.add_argument(
        "--group-threshold",
        type=float,
        default=None,
        help="the sidecar's --group-threshold (default: the bundle's, else the fallback)",
    )
    args = p.parse_args(argv)
    extra = [] if args.group_threshold is None else ["--group-threshold", str(args.group_threshold)]
    cli.smoke(
        args,
        rows=400,
        demo_rows=1000,
        batch=200,
        prose_rows=600,
        seeds=2,
        topic_sets=1,
        topic_set_rows=150,
    )
    with cli.output(args, "groups") as out:
        out.header(args.bundle, group_threshold=str(args.group_threshold or "bundle's"))
        table = out.table(
            ["workload", "rows", "group ARI", "free text ARI", f"... first {LEARNING} / after",
             "cluster ARI", "groups per topic: mean (max)", "... holding 5%+ of it",
             "structured kinds merged",
             "prose clusters", "groups", "clusters"],
            note="one source, k never given",
        )  # fmt: skip
        for name, sentences in MIXED:
            bodies, truth_list = workload(args.rows, args.prose_share, args.seed, sentences)
            truth = np.array(truth_list)
            ids, groups = label(args.bundle, bodies, args.batch, extra)
            prose = np.char.startswith(truth, "prose:")
            every, most = per_topic(groups, truth), per_topic(groups, truth, 0.05)
            table.add(
                f"mixed HTTP + {name} ({len(every)} topics)",
                len(bodies),
                fmt(adjusted_rand_score(truth, groups), ".3f"),
                fmt(adjusted_rand_score(truth[prose], groups[prose]), ".3f"),
                phases(groups[prose], truth[prose]),
                fmt(adjusted_rand_score(truth, ids), ".3f"),
                f"{np.mean(every):.1f} ({max(every)})",
                f"{np.mean(most):.1f} ({max(most)})",
                merged_kinds(groups, truth),
                len(set(ids[prose].tolist())),
                len(set(groups.tolist())),
                len(set(ids.tolist())),
            )
        demo = generate_traffic(args.demo_rows, seed=args.seed)
        d_truth = np.array(demo.column("kind").to_pylist())
        d_ids, d_groups = label(args.bundle, demo.column("body").to_pylist(), args.batch, extra)
        fb = d_truth == "feedback"
        table.add(
            "logclust demo traffic (feedback kind)",
            len(d_truth),
            fmt(adjusted_rand_score(d_truth, d_groups), ".3f"),
            "",
            "",
            fmt(adjusted_rand_score(d_truth, d_ids), ".3f"),
            f"feedback: {len(set(d_groups[fb].tolist()))}",
            "",
            merged_kinds(d_groups, d_truth),
            len(set(d_ids[fb].tolist())),
            len(set(d_groups.tolist())),
            len(set(d_ids.tolist())),
        )
        out.show(table)
        if args.seeds > 0:
            seed_table(out, args, extra)
        if args.topic_sets > 0:
            topic_set_table(out, args, extra)
        rate = prose_rate(args.bundle, args.prose_rows)
        out.line(f"free text alone, in process: {rate:,.0f} rows per CPU second")


if __name__ == "__main__":
    main()
