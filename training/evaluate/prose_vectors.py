"""How well each way of placing prose separates topics, and how fast the table reads.

    python -m training.evaluate.prose_vectors [--bundle models/default] [--n 2000 --seed 1]
    python -m training.evaluate.prose_vectors --subsets [--against OTHER/prose_words.npz]

KMeans (k = the topics, `training.evaluate.quality.SEEDS`) over the support messages of
`training.evaluate.groups.prose_messages`, ARI against their topics, for:

- `channel+lexical`: the group point of a prose text as `GroupIndex.point` makes it (the
  encoder's semantic channel plus hashed content-word stems);
- `prose_words`: the bundle's static word-vector table (`logclust.text.prose_vectors`);
- `teacher words`: the teacher's vector of each content word, encoded alone, summed
  unit rows (what the table approximates; needs the extra `distill`);
- `teacher`: the teacher on the whole message (needs the extra `distill`).

Then the topics as a stream finds them (`logclust.cluster.prose_topics.ProseTopics`, k
never given, each message placed in turn by the bundle's prose vector, as the sidecar
does): ARI over all messages and after the first 600 (once the early refits have run),
beside KMeans with k given on the same vectors and each message placed at the nearest of
the topics' true mean directions (what nearest-centre placement could reach), for 3 and 4
support-message topics and the 5 topics of `sentence_messages`, then subsets of the
topics that no setting of `topic_fit` was chosen on (2 close ones, 2 and 4 of the
sentences), seeds 1 and 2.
Last, `ProseVectors.embed` throughput on 20,000 messages (one thread, cold and warm
cache).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from logclust.cluster.groups import PROSE, GroupIndex
from logclust.cluster.labeler import Labeler
from logclust.cluster.prose_topics import ProseTopics
from logclust.cluster.topic_fit import unit_rows
from logclust.embed.bundle import Bundle
from logclust.text.prose_vectors import ProseVectors, basic_words
from training import teacher
from training.evaluate.groups import prose_messages, sentence_messages
from training.evaluate.quality import over_seeds


def channel_lexical(bundle: Bundle) -> Callable[[list[str]], np.ndarray]:
    """Group points of prose texts as the clusterer makes them today."""
    lab = Labeler(bundle)
    index = GroupIndex(threshold=1.0, semantic_from=bundle.semantic_from)

    def embed(texts: list[str]) -> np.ndarray:
        emb = lab.embed(texts)
        return np.stack([index.point(e, t, PROSE) for e, t in zip(emb, texts, strict=True)])

    return embed


def teacher_words(texts: list[str]) -> np.ndarray:
    """Sum of the teacher's unit vectors of each distinct content word, unit length."""
    from logclust.text.prose import _STOP

    words = [sorted({w for w in basic_words(t) if w not in _STOP and w.isalpha()}) for t in texts]
    vocab = sorted({w for ws in words for w in ws})
    vecs = teacher.load().encode(vocab, batch_size=256, normalize_embeddings=True)
    row = {w: i for i, w in enumerate(vocab)}
    out = np.stack([vecs[[row[w] for w in ws]].sum(0) if ws else vecs[0] * 0 for ws in words])
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def whole_teacher(texts: list[str]) -> np.ndarray:
    return np.asarray(teacher.load().encode(texts, batch_size=64, normalize_embeddings=True))


def nearest_centre(x: np.ndarray, topics: list[str]) -> float:
    """ARI of each point placed at the nearest of its topics' true mean directions: how
    well nearest-centre placement could do on these points once the centres are right
    (KMeans, k given, finds other centres where that scores lower)."""
    from sklearn.metrics import adjusted_rand_score

    truth = np.asarray(topics)
    names = sorted(set(topics))
    centres = unit_rows(np.stack([x[truth == t].mean(0) for t in names]))
    return float(adjusted_rand_score(truth, np.argmax(x @ centres.T, axis=1)))


def streamed(lab: Labeler, n: int = 2000) -> None:
    """Prints the topics a stream finds (see the module docstring)."""
    from sklearn.metrics import adjusted_rand_score

    embed = lab.prose_embed
    assert embed is not None
    print(
        "\n| stream | seed | topics found | ARI | ARI after 600 | KMeans, k given "
        "| nearest true topic centre |"
    )
    print("|---|---|---|---|---|---|---|")
    sets = {
        "3 topics": lambda s: prose_messages(n, s, ["damaged", "late", "refund"]),
        "4 topics": lambda s: prose_messages(n, s),
        "5 sentence topics": lambda s: sentence_messages(n, s),
        # subsets no setting was chosen on
        "2 close topics (damaged, late)": lambda s: prose_messages(n, s, ["damaged", "late"]),
        "3 topics (password, refund, late)": lambda s: prose_messages(
            n, s, ["password", "refund", "late"]
        ),
        "2 sentence topics (cancel, billing)": lambda s: sentence_messages(
            n, s, ["cancel", "billing"]
        ),
        "4 sentence topics (no billing)": lambda s: sentence_messages(
            n, s, ["crash", "praise", "address", "cancel"]
        ),
    }
    for name, make in sets.items():
        for seed in (1, 2):
            texts, topics = make(seed)
            x = embed(lab.masker.mask_texts(texts))
            ids = iter(range(1 << 30))
            found = ProseTopics()
            g = np.array([found.place(p, ids.__next__)[0] for p in x])
            ceiling = over_seeds(topics, x, len(set(topics)))["ari"]
            print(
                f"| {name} | {seed} | {len(found.ids)} | {adjusted_rand_score(topics, g):.3f} | "
                f"{adjusted_rand_score(topics[600:], g[600:]):.3f} | {ceiling:.3f} | "
                f"{nearest_centre(x, topics):.3f} |"
            )


def subsets(tables: dict[str, ProseVectors], n: int = 600, seed: int = 11) -> None:
    """Prints KMeans ARI (k given) of each table on every subset of 2, 3 and 4 topics of
    both message sets (`n` messages each), then the mean over subsets and, for a second
    table, how many subsets it does better or worse on (by more than 0.01)."""
    from itertools import combinations

    from training.evaluate.groups import SENTENCES, TOPICS

    names = list(tables)
    print(f"\n| topics ({n} messages, seed {seed}) | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    scores: dict[str, list[float]] = {name: [] for name in names}
    for make, topics in ((sentence_messages, SENTENCES), (prose_messages, TOPICS)):
        for r in (2, 3, 4):
            for combo in combinations(topics, r):
                texts, truth = make(n, seed, list(combo))
                row = []
                for name, pv in tables.items():
                    scores[name].append(over_seeds(truth, pv.embed(texts), r)["ari"])
                    row.append(f"{scores[name][-1]:.3f}")
                print(f"| {make.__name__}: {' + '.join(combo)} | " + " | ".join(row) + " |")
    means = " | ".join(f"{np.mean(v):.3f}" for v in scores.values())
    print(f"| **mean of {len(scores[names[0]])}** | {means} |")
    if len(names) == 2:
        a, b = np.array(scores[names[0]]), np.array(scores[names[1]])
        print(
            f"{names[1]} against {names[0]}: better on {int((b > a + 0.01).sum())}, worse on "
            f"{int((b < a - 0.01).sum())} of {len(a)} subsets (by more than 0.01)"
        )


def speed(pv_path: Path, n: int = 20_000) -> tuple[float, float]:
    """`(cold, warm)` texts/s of `ProseVectors.embed` on `n` short messages."""
    texts, _ = prose_messages(n, seed=5)
    pv = ProseVectors.load(pv_path)
    t0 = time.perf_counter()
    pv.embed(texts)
    t1 = time.perf_counter()
    pv.embed(texts)
    t2 = time.perf_counter()
    return n / (t1 - t0), n / (t2 - t1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--subsets",
        action="store_true",
        help="only the table on every 2-4 topic subset of both message sets",
    )
    ap.add_argument("--against", type=Path, default=None, help="another prose_words.npz")
    args = ap.parse_args(argv)
    bundle = Bundle.load(args.bundle)
    pv = bundle.prose_vectors
    if pv is None:
        raise SystemExit(f"{bundle.path} has no prose_words.npz (python -m training.prose_words)")
    if args.subsets:
        tables = {} if args.against is None else {"other": ProseVectors.load(args.against)}
        subsets(tables | {"bundle": pv})
        return
    texts, topics = prose_messages(args.n, seed=args.seed)
    ways: dict[str, Callable[[list[str]], np.ndarray]] = {
        "channel+lexical": channel_lexical(bundle),
        "prose_words": pv.embed,
    }
    if teacher.available():
        ways |= {"teacher words": teacher_words, "teacher": whole_teacher}
    k = len(set(topics))
    print(f"prose_messages({args.n}, seed={args.seed}), KMeans k={k}, mean of 5 seeds")
    print("| placement | ARI | ARI std |\n|---|---|---|")
    for name, embed in ways.items():
        s = over_seeds(topics, embed(texts), k)
        print(f"| {name} | {s['ari']:.3f} | {s['ari_std']:.3f} |")
    streamed(Labeler(bundle), args.n)
    path = bundle.file("prose_words.npz")
    cold, warm = speed(path)
    print(f"\nprose_words.npz: {path.stat().st_size:,} bytes, {len(pv.tokens):,} tokens x {pv.dim}")
    print(f"ProseVectors.embed: {cold:,.0f} texts/s cold cache, {warm:,.0f} warm (20,000 texts)")


if __name__ == "__main__":
    main()
