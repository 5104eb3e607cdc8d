"""What the sidecar keeps of a body is scrubbed: no e-mails, secrets, cards or tokens."""

from __future__ import annotations

import pyarrow as pa
import pytest

from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.router import StreamClusters
from logclust.text.masking import Masker
from logclust.text.privacy import scrub
from tests.fakes import FakeLabeler


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("mail to root@localhost now", "mail to <EMAIL> now"),
        ("from josé.garcía@correo.es", "from <EMAIL>"),
        ("from josé.garcí<EMAIL> x", "from <EMAIL> x"),
        ("user 用户@例子.公司 logged in", "user <EMAIL> logged in"),
        ("login password=hunter2 secret: s3cr3t ok", "login password=<SECRET> secret: <SECRET> ok"),
        ('{"api_key": "AKIA1234"}', '{"api_key": <SECRET>}'),
        ("api-key=<*>&user=<*>", "api-key=<*>&user=<*>"),
        ("card ４１１１ １１１１ １１１１ １１１１ ok", "card <CARD> ok"),
        ("order ٣٤٥ shipped", "order <NUM> shipped"),
        ("sig dGhpc2lzYXZlcnlsb25nb3BhcXVldG9rZW4xMjM0NTY3OA end", "sig <TOKEN> end"),
        ("GET <PATH> 200 in <NUM> ms", "GET <PATH> 200 in <NUM> ms"),
    ],
)
def test_scrub(raw: str, kept: str) -> None:
    assert scrub(raw) == kept


def test_exemplars_and_templates_hold_no_raw_values() -> None:
    bodies = [
        "contact josé.garcía@correo.es about order",
        "contact 用户@例子.公司 about order",
        "login ok password=hunter2 token=abc",
        "card ４１１１ １１１１ １１１１ １１１１ declined",
        "x" * 2040 + " bob@example.com tail",  # straddles the 2,048-character cut
    ]
    sc = StreamClusters(FakeLabeler(), StreamClusterConfig(background_consolidation=False))
    sc.label(pa.array(bodies), pa.array(["s"] * len(bodies)), pa.array([0] * 5).to_numpy())
    kept = " ".join(m + " " + st.template for _, st in sc.describe() for m in st.members)
    for secret in ("josé", "用户", "hunter2", "abc", "４１１１", "bob@", "example"):
        assert secret not in kept
    masked = Masker().mask_texts([bodies[-1]])[0]  # masked whole, then cut
    assert "bob" not in masked and len(masked) == 2048
