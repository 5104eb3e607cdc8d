"""The group level: a workload of free text on a few topics, and the calibration of the
group threshold (`clustering.group_threshold` in a bundle's manifest).

`prose_messages` writes support messages on a few topics, each many ways: several
openings, topic phrases built from synonyms, fillers, word order, lengths and typos, so
no two messages need share a sentence. `calibrate_group_threshold` streams such messages
(and the hand-written probe of meaning across log formats, `training/semantic_probe.tsv`,
whose lines are grouped by the template level first) through a clusterer at each
threshold of a grid and keeps the one of the best ARI against the topics, with
the probe's ARI as a smaller part of the score. Never calibrated on a held-out system.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

# topic -> (subjects, predicates): a message says "<subject> <predicate>" in some words.
TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "damaged": (
        (
            "my package",
            "the parcel",
            "the box",
            "my order",
            "the item",
            "the vase",
            "my lamp",
            "the mug",
            "the screen",
            "the chair",
            "my delivery",
        ),
        (
            "arrived damaged",
            "came broken",
            "was smashed",
            "is cracked",
            "arrived crushed",
            "was broken in transit",
            "came in pieces",
            "arrived with a big dent",
            "was shattered when I opened it",
            "is damaged and unusable",
            "came scratched and broken",
        ),
    ),
    "late": (
        (
            "my order",
            "the package",
            "my parcel",
            "the shipment",
            "my delivery",
            "the courier",
            "the order I placed last week",
            "my purchase",
        ),
        (
            "has not arrived yet",
            "is late",
            "is still not here",
            "is delayed again",
            "never showed up",
            "was supposed to arrive days ago",
            "is taking forever to arrive",
            "is overdue",
            "still has not been delivered",
            "is stuck in transit",
        ),
    ),
    "refund": (
        (
            "I want",
            "I would like",
            "please send me",
            "I am still waiting for",
            "I demand",
            "can I get",
            "how do I get",
            "when will I receive",
        ),
        (
            "a refund",
            "my money back",
            "a refund for my order",
            "the refund you promised",
            "reimbursement for the return",
            "my refund processed",
            "a full refund",
            "my money returned to my card",
        ),
    ),
    "password": (
        ("I can't", "I cannot", "I am unable to", "I'm not able to", "it won't let me"),
        (
            "log in to my account",
            "sign in",
            "reset my password",
            "access my account",
            "login with my password",
            "get into my account after the password reset",
        ),
    ),
}
# A second set, written as whole sentences (no shared subjects and predicates), to check
# what `TOPICS` tunes: topic -> sentences.
SENTENCES: dict[str, tuple[str, ...]] = {
    "crash": (
        "the app crashes every time I open the camera",
        "your application keeps freezing and then closes by itself",
        "since the last update the program shuts down on startup",
        "it froze again and I lost everything I typed",
        "the mobile app quits as soon as I tap on settings",
        "every time I upload a photo the whole thing crashes",
        "the software hangs for a minute and then dies",
        "after updating, the app will not even launch anymore",
        "it keeps crashing on my phone, I reinstalled it twice",
        "the screen goes black and the app closes",
        "I get a crash whenever I try to export a report",
        "the desktop client stops responding after a few minutes",
    ),
    "billing": (
        "I was charged twice for the same subscription this month",
        "there is a double charge on my credit card statement",
        "you billed me two times for one order",
        "why did my card get charged again after I paid",
        "the invoice shows an amount I never agreed to",
        "I see an extra payment taken from my bank account",
        "my account was billed for a plan I never picked",
        "the price on my bill is higher than advertised",
        "I got an unexpected charge from your company yesterday",
        "please explain this mystery fee on my invoice",
        "the payment went through twice by mistake",
        "my statement lists three charges for a single purchase",
    ),
    "cancel": (
        "how do I cancel my subscription",
        "please close my account and stop all future payments",
        "I want to end my membership today",
        "I would like to unsubscribe from the premium plan",
        "where is the button to cancel my plan",
        "stop my monthly renewal, I do not need the service anymore",
        "cancel my account effective immediately",
        "I no longer want this service, terminate my contract",
        "how can I delete my account for good",
        "please do not renew my yearly plan",
        "I tried to cancel online but the page does not let me",
        "end my trial before it turns into a paid plan",
    ),
    "address": (
        "I need to change the shipping address on my order",
        "can you deliver to my office instead of my home",
        "I moved last week, please update my delivery address",
        "the street name on my order is wrong, please fix it",
        "send my parcel to a different city please",
        "I typed the wrong zip code at checkout",
        "can I update where my package is going",
        "my apartment number is missing from the address",
        "please ship it to my parents' house instead",
        "how do I edit the destination of an order already placed",
        "the address you have on file is my old one",
        "redirect my delivery to the new place",
    ),
    "praise": (
        "your support team was fantastic, thank you",
        "great service, the agent solved my problem in minutes",
        "I just want to say how happy I am with your help",
        "thanks a lot, everything works perfectly now",
        "the staff were so friendly and patient with me",
        "best customer service I have had in years",
        "kudos to Maria who helped me yesterday",
        "really impressed with how quickly you replied",
        "wonderful experience, I will recommend you to friends",
        "thank you for going above and beyond",
        "amazing help from your team, much appreciated",
        "you guys are awesome, keep it up",
    ),
}
_OPENERS = ("", "Hi, ", "Hello, ", "Hey, ", "Dear support, ", "Good morning, ", "Urgent: ")
_CLOSERS = (
    "",
    " Please help.",
    " Thanks.",
    " What should I do?",
    " This is unacceptable!",
    " Please fix this asap.",
    " Thank you for your help.",
    " I am very disappointed.",
)
_FILLERS = ("really", "honestly", "unfortunately", "again", "today", "already", "sadly")


def _typo(rng: np.random.Generator, text: str) -> str:
    """One swapped pair of letters in a longer word."""
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if len(w) > 4 and w.isalpha()]
    if not long:
        return text
    i = int(rng.choice(long))
    w = words[i]
    j = int(rng.integers(1, len(w) - 2))
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def prose_message(rng: np.random.Generator, topic: str) -> str:
    """One message on `topic`, in a random wording."""
    subjects, predicates = TOPICS[topic]
    subject, predicate = str(rng.choice(subjects)), str(rng.choice(predicates))
    if rng.random() < 0.4:
        predicate = f"{rng.choice(_FILLERS)} {predicate}"
    body = f"{subject} {predicate}"
    if rng.random() < 0.3:  # a second sentence on the same topic
        body += f". Also {rng.choice(subjects)} {rng.choice(predicates)}"
    return _dressed(rng, lambda: body)


def _dressed(rng: np.random.Generator, body: Callable[[], str]) -> str:
    """`body()` with an opening and a closing, capitalised, at times lower case and with a
    typo (drawn in that order)."""
    text = f"{rng.choice(_OPENERS)}{body()}.{rng.choice(_CLOSERS)}"
    text = text[0].upper() + text[1:]
    if rng.random() < 0.3:
        text = text.lower()
    if rng.random() < 0.3:
        text = _typo(rng, text)
    return text


def prose_messages(
    n: int, seed: int = 0, topics: Sequence[str] | None = None
) -> tuple[list[str], list[str]]:
    """`(messages, topics)`: `n` messages, topics drawn evenly."""
    rng = np.random.default_rng(seed)
    names = list(topics or TOPICS)
    drawn = [names[int(i)] for i in rng.integers(0, len(names), n)]
    return [prose_message(rng, t) for t in drawn], drawn


def sentence_messages(
    n: int, seed: int = 0, topics: Sequence[str] | None = None
) -> tuple[list[str], list[str]]:
    """`(messages, topics)`: `n` messages of the second set (`SENTENCES`; of `topics`
    when given), each a sentence of its topic with an opening, a closing, case and typos
    drawn as in `prose_message`."""
    rng = np.random.default_rng(seed)
    names = list(topics or SENTENCES)
    drawn = [names[int(i)] for i in rng.integers(0, len(names), n)]
    return [_dressed(rng, partial(_pick, rng, SENTENCES[t])) for t in drawn], drawn


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return str(rng.choice(options))


def probe_lines(path: Path | None = None) -> tuple[list[str], list[str]]:
    """`(lines, meanings)` of `training/semantic_probe.tsv` (meaning <tab> line)."""
    p = path or Path(__file__).resolve().parents[1] / "semantic_probe.tsv"
    lines, labels = [], []
    for row in p.read_text().splitlines():
        if row and not row.startswith("#") and "\t" in row:
            label, line = row.split("\t", 1)
            lines.append(line)
            labels.append(label)
    return lines, labels


def group_scores(groups: Sequence[int], truth: Sequence[str]) -> tuple[float, float, int]:
    """`(ARI, mean groups per true class, true classes sharing a group with another)`."""
    from sklearn.metrics import adjusted_rand_score

    g = np.asarray(groups)
    t = np.asarray(truth)
    per = [len(set(g[t == c].tolist())) for c in sorted(set(t.tolist()))]
    owner: dict[int, set[str]] = {}
    for gi, ti in zip(g.tolist(), t.tolist(), strict=True):
        owner.setdefault(gi, set()).add(ti)
    merged = {c for s in owner.values() if len(s) > 1 for c in s}
    return float(adjusted_rand_score(t, g)), float(np.mean(per)), len(merged)


def _groups_at(labeler: object, texts: list[str], tau: float) -> list[int]:
    from logclust.cluster.config import StreamClusterConfig
    from logclust.sidecar.config import StreamLabelerConfig
    from logclust.sidecar.stream_labeler import StreamLabeler

    clusters = StreamClusterConfig(group_threshold=tau, background_consolidation=False)
    sl = StreamLabeler(labeler, StreamLabelerConfig(clusters=clusters))  # type: ignore[arg-type]
    out: list[int] = []
    for start in range(0, len(texts), 500):
        r = sl.label(texts[start : start + 500], source="calibration")
        assert r.groups is not None
        out += r.groups.tolist()
    return out


def calibrate_group_threshold(
    labeler: object, grid: Sequence[float] = (0.9, 0.95, 1.0, 1.05, 1.1, 1.2), n: int = 2000
) -> tuple[float, dict[str, dict[str, float]]]:
    """`(threshold, scores per threshold)`: the threshold of `grid` whose group ids give
    the best ARI on prose topics (plus a quarter of the probe's ARI). With the bundle's
    prose word vectors, prose is placed by topic whatever the threshold
    (`logclust.cluster.prose_topics`), so the probe decides."""
    prose, topics = prose_messages(n, seed=1)
    probe, meanings = probe_lines()
    report: dict[str, dict[str, float]] = {}
    best, best_score = None, -1.0
    for tau in grid:
        ari, per, merged = group_scores(_groups_at(labeler, prose, tau), topics)
        p_ari, p_per, _ = group_scores(_groups_at(labeler, probe, tau), meanings)
        report[str(tau)] = {
            "prose_ari": ari,
            "groups_per_topic": per,
            "topics_merged": merged,
            "probe_ari": p_ari,
            "probe_groups_per_meaning": p_per,
        }
        score = ari + 0.25 * p_ari
        if score > best_score:
            best, best_score = tau, score
    return (best if best is not None else min(grid)), report
