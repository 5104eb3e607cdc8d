"""Tests of `log_format.LogFormat`."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pytest

from logclust.text.log_format import PRESETS, LogFormat

LOGHUB = Path("/work/shared/data/loghub-2k")


def test_parse_and_split() -> None:
    fmt = LogFormat.parse("<Date> <Time> <Pid> <Level> <Component>: <Content>")
    lines = pa.array(
        [
            "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 done: ok ",
            "not a header line",
            None,
        ]
    )
    table = fmt.split(lines)
    assert table.column_names == ["date", "time", "pid", "level", "component", "content"]
    assert table.to_pylist() == [
        {
            "date": "081109",
            "time": "203615",
            "pid": "148",
            "level": "INFO",
            "component": "dfs.DataNode$PacketResponder",
            "content": "PacketResponder 1 done: ok",
        },
        dict.fromkeys(fmt.columns[:-1]) | {"content": "not a header line"},
        dict.fromkeys(fmt.columns),
    ]


def test_spaces_match_any_whitespace_and_literals_are_literal() -> None:
    fmt = LogFormat.parse("<Time> a.b <Level> (<Thread>) <Content>")
    out = fmt.split(pa.array(["10:00  a.b\tWARN (main) x  y", "10:00 aXb WARN (main) x"]))
    assert out.to_pylist()[0] == {
        "time": "10:00",
        "level": "WARN",
        "thread": "main",
        "content": "x  y",
    }
    assert out.to_pylist()[1]["level"] is None  # `.` is not a wildcard


def test_optional_part_and_escapes() -> None:
    fmt = LogFormat.resolve("LINUX")
    out = fmt.split(
        pa.array(
            [
                "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure;",
                "Jun 15 04:06:18 combo su(pam_unix): session opened",
            ]
        )
    ).to_pylist()
    assert out[0]["component"] == "sshd(pam_unix)" and out[0]["pid"] == "19939"
    assert out[1]["component"] == "su(pam_unix)" and out[1]["pid"] == ""
    assert out[1]["content"] == "session opened"


def test_resolve_preset_names_case_insensitively_or_formats() -> None:
    assert LogFormat.resolve("hdfs") == LogFormat.parse(PRESETS["HDFS"])
    assert LogFormat.resolve(" Syslog ").fields[-1] == "Content"
    assert LogFormat.resolve("<Level> <Content>").columns == ["level", "content"]
    with pytest.raises(ValueError, match="Received: name_or_fmt='nosuch'"):
        LogFormat.resolve("nosuch")


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("<Date> <Time>", "needs a <Content>"),
        ("<Date> <date> <Content>", "Duplicate fields"),
        ("<Date> <1x> <Content>", "Field names"),
        ("<Da te> <Content>", "Field names"),
    ],
)
def test_parse_rejects_bad_formats(fmt: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        LogFormat.parse(fmt)
    assert f"Received: fmt={fmt!r}" in str(err.value)


def test_split_rejects_non_strings_and_takes_chunked() -> None:
    fmt = LogFormat.resolve("level")
    with pytest.raises(TypeError, match="Received: type=int64"):
        fmt.split(pa.array([1]))
    out = fmt.split(pa.chunked_array([["2024-01-02 10:00:00 INFO hi"], ["x"]]))
    assert out["level"].to_pylist() == ["INFO", None]


def _ground_truth(system: str) -> tuple[list[str], list[str]] | None:
    folder = LOGHUB / system
    csvs = sorted(folder.glob(f"{system}_2k.log_structured*.csv"))
    if not csvs:
        return None
    lines = (folder / f"{system}_2k.log").read_text(encoding="utf-8").splitlines()
    with open(csvs[0], encoding="utf-8", newline="") as f:
        contents = [row["Content"] for row in csv.DictReader(f)]
    return lines, contents


@pytest.mark.skipif(not LOGHUB.is_dir(), reason="loghub-2k data is absent")
@pytest.mark.parametrize("system", [name for name in PRESETS if name[0].isupper()])
def test_presets_match_loghub_ground_truth(system: str) -> None:
    data = _ground_truth(system)
    if data is None:
        pytest.skip(f"no loghub-2k files for {system}")
    lines, contents = data
    got = LogFormat.resolve(system).split(pa.array(lines))["content"].to_pylist()
    matches = sum(a == b for a, b in zip(got, contents, strict=True))
    print(f"\n{system}: {matches}/{len(lines)} contents equal the ground truth")
    assert matches == len(lines)
