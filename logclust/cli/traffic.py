"""Online Boutique-like frontend traffic: request bodies of many shapes, with latencies.

`generate_traffic` grows the demo's three kinds (unchanged: same bodies, latencies and
add-to-cart spike episode) to thirteen kinds that differ in format and in content:

* form-encoded: `add_to_cart`, `checkout`, `set_currency`, `signup`, `review`,
  `update_address` (several, so that the model and not the format tells them apart);
* query string: `search` (with or without an `/api/search?` path and a `sort`);
* JSON: `login` (keys in random order, optional `otp`), `place_order` (nested);
* GraphQL over JSON: `get_product` (a query) and `add_review` (a mutation);
* XML: `xml_order` (a legacy order endpoint, 1-5 `<Item>` elements);
* plain text: `feedback` (a free sentence).

Every kind has its own lognormal latency (`MEDIANS`, `SIGMAS`) and share (`SHARES`,
uneven, some at 2-3%). Checkout stays the slowest kind, as the demo expects.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from urllib.parse import urlencode

import numpy as np
import pyarrow as pa

# kind: (share, median latency ms, lognormal sigma)
_PROFILES: dict[str, tuple[float, float, float]] = {
    "add_to_cart": (0.23, 4.0, 0.25),
    "checkout": (0.08, 100.0, 0.25),
    "set_currency": (0.20, 0.2, 0.25),
    "search": (0.15, 25.0, 0.5),
    "login": (0.08, 35.0, 0.3),
    "place_order": (0.05, 60.0, 0.35),
    "get_product": (0.07, 8.0, 0.4),
    "add_review": (0.03, 20.0, 0.35),
    "signup": (0.02, 45.0, 0.3),
    "review": (0.03, 15.0, 0.3),
    "update_address": (0.02, 12.0, 0.3),
    "xml_order": (0.02, 70.0, 0.3),
    "feedback": (0.02, 3.0, 0.5),
}
KINDS: tuple[str, ...] = tuple(_PROFILES)
SHARES: dict[str, float] = {k: p[0] for k, p in _PROFILES.items()}
MEDIANS: dict[str, float] = {k: p[1] for k, p in _PROFILES.items()}
SIGMAS: dict[str, float] = {k: p[2] for k, p in _PROFILES.items()}

_PRODUCTS = (
    "OLJCESPC7Z", "66VCHSJNUP", "1YMWWN1N4O", "L9ECAV7KIM", "2ZYFJ3GM2N",
    "0PUK6V6EV0", "LS4PSXUNUM", "9SIQT8TOJO", "6E92ZMYYFZ",
)  # fmt: skip
_CURRENCIES = ("EUR", "USD", "JPY", "GBP", "CAD", "TRY")
_ADDRESSES = (
    ("Amphitheatre Parkway", "94043", "Mountain View", "CA"),
    ("Main Street", "10001", "New York", "NY"),
    ("Elm Avenue", "60601", "Chicago", "IL"),
    ("Market Street", "94105", "San Francisco", "CA"),
    ("Pine Road", "98101", "Seattle", "WA"),
    ("Oak Lane", "73301", "Austin", "TX"),
)
_NAMES = ("someone", "alice.smith", "bob", "carol99", "dave.jones", "erin")
_FIRST = (
    "alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy "
    "rupert sybil trent victor walter yusuf zoe"
).split()
_LAST = "smith jones lee garcia muller rossi kim nguyen silva novak okafor tanaka".split()
_STREET_WORDS = "Maple Cedar Birch Willow Lake Hill River Park Sunset Church Mill".split()
_STREET_TYPES = ("Street", "Avenue", "Road", "Lane", "Boulevard", "Drive", "Way")
_CITIES = ("Springfield", "Riverside", "Fairview", "Lyon", "Berlin", "Osaka", "Toronto")
_COUNTRIES = ("United States", "Canada", "Germany", "France", "Japan", "Turkey")
_SHIPPING, _SORTS = ("standard", "express", "overnight", "pickup"), ("price", "relevance", "newest")
# Search words, review comments and feedback sentences draw from this vocabulary.
_WORDS = (
    "vintage camera lens film tripod sunglasses aviator polarized watch leather strap "
    "steel gold silver tank top cotton linen shirt jacket denim jeans sneakers boots "
    "sandals hat scarf gloves mug coffee tea kettle pot pan candle holder lamp table "
    "chair desk shelf rug pillow blanket towel soap bottle glass jar bowl plate spoon "
    "knife fork salt pepper shaker grinder bamboo wooden ceramic metal plastic wool "
    "vegan organic handmade classic modern retro minimal portable wireless waterproof "
    "lightweight heavy small large black white red blue green yellow pink brown grey "
    "orange purple bag backpack wallet belt socks dress skirt sweater hoodie charger "
    "cable speaker headphones keyboard mouse notebook pen pencil plant vase mirror clock "
    "great cheap fast slow broken perfect lovely awful gift sale new"
).split()
_FILLER = ("the", "is", "and", "very", "it", "a", "was", "but", "really", "my", "not")
_OPENERS = ("I love the", "Why is the", "Please add more", "The", "Delivery of my",
            "Could you restock the", "Thanks for the", "Your site lost my")  # fmt: skip

_GQL_GET = (
    "query GetProduct($id: ID!) {\n  product(id: $id) {\n    name\n"
    "    price {\n      currencyCode\n      units\n    }\n  }\n}"
)
_GQL_ADD = (
    "mutation AddReview($productId: ID!, $rating: Int!, $text: String) {\n"
    "  addReview(productId: $productId, rating: $rating, text: $text) {\n"
    "    id\n    createdAt\n  }\n}"
)


def _pick(rng: np.random.Generator, seq: tuple[str, ...] | list[str]) -> str:
    return seq[int(rng.integers(len(seq)))]


def _words(rng: np.random.Generator, lo: int, hi: int, filler: bool = False) -> list[str]:
    """`lo`..`hi` random vocabulary words, a third of them filler words if `filler`."""
    out = []
    for _ in range(int(rng.integers(lo, hi + 1))):
        out.append(_pick(rng, _FILLER if filler and rng.random() < 0.33 else _WORDS))
    return out


def _user(rng: np.random.Generator) -> str:
    digits = str(rng.integers(0, 100)) if rng.random() < 0.4 else ""
    return f"{_pick(rng, _FIRST)}{_pick(rng, ('.', '_', ''))}{_pick(rng, _LAST)}{digits}"


def _password(rng: np.random.Generator) -> str:
    chars = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789!#$%"
    return "".join(chars[i] for i in rng.integers(0, len(chars), int(rng.integers(8, 17))))


def _street(rng: np.random.Generator) -> str:
    return f"{rng.integers(1, 3000)} {_pick(rng, _STREET_WORDS)} {_pick(rng, _STREET_TYPES)}"


def _shuffled(rng: np.random.Generator, d: dict[str, object]) -> dict[str, object]:
    keys = list(d)
    return {keys[i]: d[keys[i]] for i in rng.permutation(len(keys))}


def _gql_text(rng: np.random.Generator, text: str) -> str:
    """Formats `text` as clients send it: multi-line, one line, or re-indented."""
    u = rng.random()
    if u < 0.4:
        return text
    if u < 0.8:
        return " ".join(text.split())
    return "\n" + text.replace("  ", "    ") + "\n"


# --- the three kinds of the original demo (unchanged) ---------------------------------
def _bodies_add_to_cart(rng: np.random.Generator, n: int) -> list[str]:
    prod = rng.choice(_PRODUCTS, n)
    qty = rng.integers(1, 10, n)
    return [f"product_id={p}&quantity={q}" for p, q in zip(prod, qty, strict=True)]


def _bodies_currency(rng: np.random.Generator, n: int) -> list[str]:
    return [f"currency_code={c}" for c in rng.choice(_CURRENCIES, n)]


def _bodies_checkout(rng: np.random.Generator, n: int) -> list[str]:
    out = []
    for _ in range(n):
        street, zip_code, city, state = _ADDRESSES[rng.integers(len(_ADDRESSES))]
        card = "-".join(f"{v:04d}" for v in rng.integers(0, 10_000, 4))
        out.append(
            f"email={rng.choice(_NAMES)}@example.com"
            f"&street_address={rng.integers(1, 3000)} {street}&zip_code={zip_code}"
            f"&city={city}&state={state}&country=United States&credit_card_number={card}"
            f"&credit_card_expiration_month={rng.integers(1, 13)}"
            f"&credit_card_expiration_year={rng.integers(2026, 2035)}"
            f"&credit_card_cvv={rng.integers(100, 1000)}"
        )
    return out


# --- the new kinds: one body per call ---------------------------------------------------
def _signup(rng: np.random.Generator) -> str:
    user = _user(rng)
    fields = {
        "username": user,
        "email": f"{user}@{_pick(rng, ('example.com', 'mail.test', 'shop.example'))}",
        "password": _password(rng),
        "newsletter": _pick(rng, ("true", "false")),
    }
    if rng.random() < 0.3:
        fields["referral_code"] = f"REF{rng.integers(1000, 100_000)}"
    return urlencode(fields)


def _review(rng: np.random.Generator) -> str:
    fields = {"product_id": _pick(rng, _PRODUCTS), "rating": str(rng.integers(1, 6))}
    if rng.random() < 0.4:
        fields["title"] = " ".join(_words(rng, 1, 4)).capitalize()
    fields["comment"] = " ".join(_words(rng, 3, 25, filler=True))
    return urlencode(fields)


def _update_address(rng: np.random.Generator) -> str:
    fields = {
        "street_address": _street(rng),
        "city": _pick(rng, _CITIES),
        "zip_code": f"{rng.integers(0, 100_000):05d}",
        "country": _pick(rng, _COUNTRIES),
    }
    # Web, mobile and legacy clients order the fields differently.
    order = _pick(rng, ("sczk", "sczk", "sczk", "kczs", "zcsk"))
    keys = {"s": "street_address", "c": "city", "z": "zip_code", "k": "country"}
    return urlencode([(keys[c], fields[keys[c]]) for c in order])


def _search(rng: np.random.Generator) -> str:
    query = f"q={'+'.join(_words(rng, 1, 3))}&page={rng.integers(1, 20)}"
    if rng.random() < 0.7:
        query += f"&sort={_pick(rng, _SORTS)}"
    return ("/api/search?" if rng.random() < 0.4 else "") + query


def _login(rng: np.random.Generator) -> str:
    body: dict[str, object] = {
        "username": _user(rng),
        "password": _password(rng),
        "remember_me": bool(rng.random() < 0.6),
    }
    if rng.random() < 0.25:
        body["otp"] = f"{rng.integers(0, 1_000_000):06d}"
    return json.dumps(_shuffled(rng, body))


def _place_order(rng: np.random.Generator) -> str:
    items = [
        {"product_id": _pick(rng, _PRODUCTS), "quantity": int(rng.integers(1, 6))}
        for _ in range(int(rng.integers(1, 6)))
    ]
    address = {
        "street": _street(rng),
        "city": _pick(rng, _CITIES),
        "zip": f"{rng.integers(0, 100_000):05d}",
        "country": _pick(rng, _COUNTRIES),
    }
    body: dict[str, object] = {
        "user_id": f"u-{rng.integers(1, 10**6)}",
        "currency": _pick(rng, _CURRENCIES),
        "items": items,
        "shipping": _shuffled(rng, {"method": _pick(rng, _SHIPPING), "address": address}),
    }
    if rng.random() < 0.2:
        body["coupon"] = f"SAVE{rng.integers(5, 50)}"
    return json.dumps(_shuffled(rng, body), indent=2 if rng.random() < 0.3 else None)


def _get_product(rng: np.random.Generator) -> str:
    body: dict[str, object] = {
        "query": _gql_text(rng, _GQL_GET),
        "variables": {"id": _pick(rng, _PRODUCTS)},
    }
    if rng.random() < 0.3:
        body["operationName"] = "GetProduct"
    return json.dumps(body)


def _add_review(rng: np.random.Generator) -> str:
    variables: dict[str, object] = {
        "productId": _pick(rng, _PRODUCTS),
        "rating": int(rng.integers(1, 6)),
        "text": " ".join(_words(rng, 2, 20, filler=True)),
    }
    body = {"query": _gql_text(rng, _GQL_ADD), "variables": _shuffled(rng, variables)}
    if rng.random() < 0.3:
        body["operationName"] = "AddReview"
    return json.dumps(body)


def _xml_order(rng: np.random.Generator) -> str:
    sep = _pick(rng, ("", "", "\n", "\n  "))  # pretty-printed by some clients
    n = int(rng.integers(1, 6))
    items = [f'<Item sku="{_pick(rng, _PRODUCTS)}" qty="{rng.integers(1, 10)}"/>' for _ in range(n)]
    customer = f"{_pick(rng, _FIRST).capitalize()} {_pick(rng, _LAST).capitalize()}"
    head = ['<?xml version="1.0"?>', "<Order>", f"<Id>{rng.integers(10**5, 10**7)}</Id>"]
    tail = [f"<Customer>{customer}</Customer>", "<Items>", *items, "</Items>", "</Order>"]
    return sep.join(head + tail)


def _feedback(rng: np.random.Generator) -> str:
    words = " ".join(_words(rng, 2, 10, filler=True))
    return f"{_pick(rng, _OPENERS)} {words}{_pick(rng, ('.', '!', '?', '...'))}"


_Maker = Callable[[np.random.Generator, int], list[str]]


def _each(make: Callable[[np.random.Generator], str]) -> _Maker:
    return lambda rng, n: [make(rng) for _ in range(n)]


_MAKERS: dict[str, _Maker] = {
    "add_to_cart": _bodies_add_to_cart,
    "checkout": _bodies_checkout,
    "set_currency": _bodies_currency,
    "search": _each(_search),
    "login": _each(_login),
    "place_order": _each(_place_order),
    "get_product": _each(_get_product),
    "add_review": _each(_add_review),
    "signup": _each(_signup),
    "review": _each(_review),
    "update_address": _each(_update_address),
    "xml_order": _each(_xml_order),
    "feedback": _each(_feedback),
}


# The demo's first three kinds: the Online Boutique workload of earlier benchmarks.
BOUTIQUE_KINDS: tuple[str, ...] = ("add_to_cart", "checkout", "set_currency")


def generate_traffic(
    rows: int = 20_000,
    seed: int = 0,
    end_ms: int | None = None,
    span_s: float = 600.0,
    kinds: tuple[str, ...] = KINDS,
) -> pa.Table:
    """Frontend request bodies with latencies, spread evenly over `span_s` seconds.

    Args:
        rows: number of requests.
        seed: seed of the random generator; equal seeds give equal tables.
        end_ms: the end of the span (epoch ms, UTC); None means now.
        span_s: the length of the span in seconds; times lie in [end - span, end).
        kinds: the kinds drawn (shares renormalised); `BOUTIQUE_KINDS` gives the
            three-kind workload of earlier benchmarks.

    Returns:
        Columns `body`, `latency_ms` (float64), `time` (timestamp ms, UTC, sorted),
        `source` (`"frontend"`) and `kind` (the true request kind, one of `KINDS`).

    Raises:
        ValueError: `rows` is not positive.
    """
    if rows < 1:
        raise ValueError(f"rows must be positive. Received: rows={rows}")
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds or "add_to_cart" not in kinds:
        raise ValueError(
            f"kinds must be some of {KINDS}, add_to_cart among them. Received: kinds={kinds}"
        )
    rng = np.random.default_rng(seed)
    share = np.array([SHARES[k] if k in kinds else 0.0 for k in KINDS])
    kind = rng.choice(len(KINDS), rows, p=share / share.sum())
    end_ms = int(time.time() * 1000) if end_ms is None else end_ms
    t = end_ms - int(span_s * 1000) + np.sort(rng.integers(0, int(span_s * 1000), rows))
    body = np.empty(rows, object)
    latency = np.empty(rows, np.float64)
    for k, name in enumerate(KINDS):
        idx = np.flatnonzero(kind == k)
        body[idx] = _MAKERS[name](rng, idx.size)
        latency[idx] = MEDIANS[name] * rng.lognormal(0.0, SIGMAS[name], idx.size)
    # A short spike episode in add-to-cart (a slow cart backend) two thirds into the span:
    # 0.5% of the span, so it shows in its window's p99 but not in the overall p99.
    spike_at = end_ms - int(span_s * 1000 / 3)
    cart = kind == KINDS.index("add_to_cart")
    spiking = cart & (t >= spike_at) & (t < spike_at + int(span_s * 5))
    latency[spiking] *= rng.uniform(5.0, 15.0, int(spiking.sum()))
    return pa.table(
        {
            "body": pa.array(body.tolist(), pa.string()),
            "latency_ms": pa.array(latency, pa.float64()),
            "time": pa.array(t, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "source": pa.array(["frontend"] * rows, pa.string()),
            "kind": pa.array(np.asarray(KINDS)[kind].tolist(), pa.string()),
        }
    )
