"""Word templates (`logclust.cluster.templates`): which positions are variables, and
lines placed by their templates through the stream clusterer."""

from __future__ import annotations

import pyarrow as pa
import pytest

from logclust.cluster import state as codec
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.descriptions import template_of
from logclust.cluster.forms import form_keys
from logclust.cluster.router import StreamClusters
from logclust.cluster.templates import (
    TemplateIndex,
    TemplateSettings,
    is_structured,
    is_variable,
    shape_of,
    variable_like,
)
from tests.cluster.streams import run, saved
from tests.fakes import FakeLabeler

CFG = StreamClusterConfig(background_consolidation=False, reservoir_size=200)


def _stream(index: TemplateIndex, lines: list[str]) -> list[int]:
    """Each line's cluster through `index` alone (a new form opens the next id), read
    after the whole stream (merges followed)."""
    aliases: dict[int, int] = {}
    next_id = 0
    for line in lines:
        found = index.match(shape_of(line))
        aliases.update(found.merged)
        if found.cid is None:
            index.add(shape_of(line), next_id)
            next_id += 1
    out = []
    for line in lines:
        cid = index.match(shape_of(line)).cid
        assert cid is not None
        while cid in aliases:
            cid = aliases[cid]
        out.append(cid)
    return out


def _groups(ids: list[int]) -> int:
    return len(set(ids))


# -- shapes ---------------------------------------------------------------------------------


def test_shape_writes_runs_with_a_placeholder_as_one_variable() -> None:
    assert shape_of("connection from <IP> (dsl-<IP>.<HOST>) at <TS>") == (
        "connection",
        "from",
        "<*>",
        "(<*>)",
        "at",
        "<*>",
    )
    assert shape_of("BIOS-<ID>: <NUM> - <NUM> (usable)") == ("<*>:", "<*>", "-", "<*>", "(usable)")
    assert shape_of("chdir(<PATH>) failed, uid=<NUM>") == ("chdir(<*>)", "failed,", "uid=<*>")


def test_shape_folds_units_and_runs_of_variables() -> None:
    assert shape_of("size <NUM> KB, free <NUM> B") == shape_of("size <NUM> MB, free <NUM> KB")
    assert shape_of("channels <NUM> <NUM> <NUM> <NUM>") == ("channels", "<*>")


def test_what_reads_as_a_variable() -> None:
    assert is_variable("<*>") and is_variable("(<*>)") and is_variable("<*>:<*>")
    assert is_variable("()") and not is_variable("uid=<*>") and not is_variable("HTTPS")
    assert variable_like("cyrus1", "news7")  # digits
    assert variable_like("name=android", "name=com.android.phone")  # same key
    assert variable_like("com.apple.x.daily:", "com.apple.Safari.Update:")  # dotted names
    assert not variable_like("action=ACTION_DOWN", "action=ACTION_UP")  # an enum
    assert not variable_like("TASK_ABORT", "JOB_SETUP")
    assert not variable_like("Paused", "Resumed")  # plain words: the statistics decide
    assert not variable_like("HTTPS", "<*>")  # an established word against a masked one
    assert variable_like("<*>", "HTTPS")


def test_structured_bodies_and_form_fields() -> None:
    assert is_structured('{"a": <NUM>}') and is_structured("[<NUM>, <NUM>]")
    assert is_structured("<Order><Id><NUM></Id></Order>") and is_structured("a=<*>&b=<*>")
    assert not is_structured("[instance: <UUID>] VM Paused (Lifecycle Event)")
    assert not is_structured("<NUM> bytes sent") and not is_structured("ready=<*>")
    assert form_keys("<PATH>?q=<*>&page=<NUM>") == form_keys("page=<NUM>&q=<*>")
    assert form_keys("q=<*>&page=<NUM>") == ("<form>", "page", "q")
    assert form_keys("connection closed") is None


# -- deciding variables ---------------------------------------------------------------------


def test_user_names_after_a_slot_word_become_one_template() -> None:
    lines = [f"session closed for user {u}" for u in ("cyrus", "news", "test", "cyrus")]
    ids = _stream(TemplateIndex(), lines)
    assert _groups(ids) == 1


def test_few_capitalised_states_stay_apart_and_many_words_merge() -> None:
    states = ["Paused", "Resumed", "Stopped", "Started"]
    lines = [f"[instance: <UUID>] VM {s} (Lifecycle Event)" for s in states * 5]
    ids = _stream(TemplateIndex(), lines)
    assert _groups(ids) == 4  # four distinct templates, each seen often
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    ids = _stream(TemplateIndex(), [f"job {w} finished in time" for w in words])
    assert _groups(ids) == 1  # one position, six words: a variable


def test_a_first_word_is_never_turned_into_a_variable_by_counting() -> None:
    lines = [f"{d} startup succeeded" for d in ("cupsd", "syslogd", "klogd", "sshd", "crond")]
    assert _groups(_stream(TemplateIndex(), lines)) == 5


def test_variable_like_words_generalise_at_once() -> None:
    lines = ["open file a1.txt for read", "open file b22.txt for read", "open file x for write"]
    ids = _stream(TemplateIndex(), lines)
    assert ids[0] == ids[1] != ids[2]


def test_optional_variables_align_with_a_template_of_another_length() -> None:
    lines = [
        "<HOST>:<NUM> close, <NUM> bytes sent, <NUM> bytes received, lifetime <NUM>:<NUM>",
        "<HOST>:<NUM> close, <NUM> bytes (<NUM> KB) sent, <NUM> bytes received, lifetime <NUM>",
        "PCI: Probing PCI hardware",
        "PCI: Probing PCI hardware (bus <NUM>)",  # a constant word more: another template
    ]
    ids = _stream(TemplateIndex(), lines)
    assert ids[0] == ids[1] and ids[2] != ids[3]


def test_an_all_variable_template_takes_all_variable_lines_only() -> None:
    ids = _stream(TemplateIndex(), ["<NUM>", "<HEX> <NUM>", "ready", "setLightsOn(<NUM>)"])
    assert ids[0] == ids[1] and len({ids[0], ids[2], ids[3]}) == 3


def test_the_index_round_trips_through_its_document() -> None:
    index = TemplateIndex()
    _stream(index, [f"session opened for user {u} by (uid=<NUM>)" for u in ("a", "b", "c")])
    again = TemplateIndex.from_doc(index.to_doc(), TemplateSettings())
    assert again.to_doc() == index.to_doc()
    assert again.match(shape_of("session opened for user zed by (uid=<NUM>)")).cid == 0
    with pytest.raises(ValueError, match="Malformed templates"):
        TemplateIndex.from_doc({"templates": [[0, "not a list"]]})


# -- through the stream clusterer ------------------------------------------------------------


def test_lines_of_a_known_template_need_no_embedding() -> None:
    fake = FakeLabeler()
    sc = StreamClusters(fake, CFG)
    users = ["root", "news", "cyrus", "test", "admin", "guest", "oracle", "ftp"]
    first = run(sc, pa.table({"body": [f"session closed for user {u}" for u in users[:3]]}))
    embedded = fake.rows_embedded
    later = run(sc, pa.table({"body": [f"session closed for user {u}" for u in users[3:]]}))
    assert fake.rows_embedded == embedded  # new values of a known template: no encoder
    assert len(set(first.tolist()) | set(later.tolist())) == 1


def test_template_merges_are_aliases_and_survive_a_restart() -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    ids = run(sc, pa.table({"body": ["disk sda1 is full", "disk sdb2 is full", "fan ok"]}))
    assert ids[0] == ids[1] != ids[2]
    states, counters = saved(sc)
    again = StreamClusters(FakeLabeler(), CFG)
    again.load_states(states, counters)
    fake = again.embedder
    before = fake.rows_embedded  # type: ignore[attr-defined]
    more = run(again, pa.table({"body": ["disk nvme0 is full", "fan ok"]}))
    assert more.tolist() == [ids[0], ids[2]]
    assert fake.rows_embedded == before  # type: ignore[attr-defined]


def test_consolidation_never_merges_clusters_that_templates_keep_apart() -> None:
    cfg = StreamClusterConfig(background_consolidation=False, reservoir_size=200, threshold=1.9)
    sc = StreamClusters(FakeLabeler(), cfg)
    lines = [f"VM {s} (Lifecycle Event)" for s in ("Paused", "Resumed")] * 20
    ids = run(sc, pa.table({"body": lines}))
    assert len(set(ids.tolist())) == 2
    sc.consolidate_now("default")
    again = run(sc, pa.table({"body": lines}))
    assert len(set(again.tolist())) == 2 and not sc.sources["default"].aliases


def test_a_state_saved_without_templates_keeps_its_ids() -> None:
    lines = [f"user u{i} logged in from <IP>" for i in range(5)] + ["disk full"] * 3
    old = StreamClusters(FakeLabeler(), StreamClusterConfig(templates=False))
    old_ids = run(old, pa.table({"body": lines}))
    states, counters = saved(old)
    meta, _ = codec.unpack_state(states["default"])
    assert "templates" not in meta  # the format of a state written before templates
    new = StreamClusters(FakeLabeler(), CFG)
    new.load_states(states, counters)
    assert run(new, pa.table({"body": lines})).tolist() == old_ids.tolist()


@pytest.mark.parametrize(
    ("name", "lines", "clusters"),
    [
        ("one word", [f"w{i}" for i in range(50)] + ["ok"] * 50, (2, 51)),
        ("10,000 words", [" ".join(f"t{i}x{j}" for j in range(10_000)) for i in range(3)], (1, 1)),
        ("all variables", ["<*> <*> <*>", "<NUM> <NUM>", "1 2 3 4"] * 10, (1, 1)),
        ("binary", [bytes(range(i, i + 40)).decode("latin-1") for i in range(30)], (1, 30)),
        (
            "not UTF-8",
            [b"\xff\xfe caf\xe9 %d".decode("utf-8", "replace") % i for i in range(20)],
            (1, 1),
        ),
    ],
)
def test_bad_lines_neither_explode_nor_collapse(
    name: str, lines: list[str], clusters: tuple[int, int]
) -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    ids = run(sc, pa.table({"body": lines + ["disk sda1 is full"]}))
    k = len(set(ids[:-1].tolist()))
    assert clusters[0] <= k <= clusters[1], (name, k)
    assert ids[-1] not in set(ids[:-1].tolist())  # a real line is never swallowed


def test_a_description_keeps_separators_and_constant_words() -> None:
    members = ["tty=NODEVssh ruser= rhost=<IP>", "tty=<NUM> ruser= rhost="]
    assert template_of(members) == "tty=<*> ruser= rhost=<*>"
    assert template_of(["session closed for user cyrus", "session closed for user news"]) == (
        "session closed for user <*>"
    )


def test_a_form_described_in_its_most_common_field_order() -> None:
    members = ["b=<NUM>&a=<*>", "a=<*>&b=<NUM>", "b=<NUM>&a=<*>"]
    assert template_of(members) == "b=<NUM>&a=<*>"  # no field name lost to `<*>`
