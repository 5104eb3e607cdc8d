"""The semantic dev set: lines of the train systems grouped by what they mean.

`CATEGORIES` is the hand labelling: each category's rule and, per train system, the
ground-truth templates (loghub-2k `EventId`s, corrected templates) that meet it, chosen
by reading every template of the twelve train systems (never Android). A template that
fits no rule, or two, is left out. `build` draws raw lines of those templates into
`training/semantic_dev.csv` (`category,system,line`), which the repository keeps, so
the set is read without the data; `python -m training.evaluate.semantic_dev --data
../shared/data/loghub-2k` remakes it. Rules and counts: `training/semantic_dev.md`.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from training import data as data_mod

CSV = Path(__file__).resolve().parents[1] / "semantic_dev.csv"
PER_CATEGORY = 24  # lines drawn per category, spread over its systems and templates
PER_TEMPLATE = 4  # at most: a category is many wordings, not one template repeated


@dataclass(frozen=True)
class Category:
    rule: str
    templates: dict[str, tuple[str, ...]]  # system -> EventIds


def _ids(*nums: int) -> tuple[str, ...]:
    return tuple(f"E{n}" for n in nums)


CATEGORIES: dict[str, Category] = {
    "login_failure": Category(
        "a user or client failed to authenticate (wrong password, unknown user, denied auth)",
        {"Linux": _ids(13, 15, 16, 17, 18, 19, 27, 31, 61), "Mac": _ids(171)},
    ),
    "login_success": Category(
        "a user or client authenticated or logged in, or a login session was opened",
        {"Linux": _ids(9, 91, 102, 103), "Hadoop": _ids(23), "Mac": _ids(163)},
    ),
    "session_created": Category(
        "a client session was created, established or initialised (not a login)",
        {"Zookeeper": _ids(7, 13), "Mac": _ids(308), "Windows": _ids(35, 36)},
    ),
    "session_ended": Category(
        "a session was closed, destroyed, expired or terminated",
        {"Linux": _ids(101), "Zookeeper": _ids(15, 38), "Mac": _ids(309)},
    ),
    "connection_opened": Category(
        "an incoming or outgoing connection was accepted, requested or opened",
        {"Zookeeper": _ids(2, 40), "Linux": _ids(29), "Proxifier": _ids(1, 2)},
    ),
    "connection_closed": Category(
        "a connection was closed normally (not broken by an error)",
        {"Proxifier": _ids(8), "Zookeeper": _ids(9, 10), "Mac": _ids(315)},
    ),
    "connect_failed": Category(
        "an attempt to connect to a server or peer failed or is being retried",
        {
            "Proxifier": _ids(3, 4, 5),
            "Zookeeper": _ids(5),
            "Hadoop": _ids(38, 91),
            "Mac": _ids(202),
        },
    ),
    "connection_lost": Category(
        "an established connection broke: reset by peer, severed, end of stream, closed "
        "unexpectedly",
        {
            "BGL": _ids(29, 30, 32),
            "Linux": _ids(47, 116),
            "Proxifier": _ids(6, 7),
            "Zookeeper": _ids(6, 11),
            "Mac": _ids(302),
        },
    ),
    "network_unreachable": Category(
        "the network or a route to a host is down or unreachable, or the machine is offline",
        {"Mac": _ids(123, 272, 285, 316, 317, 318), "Hadoop": _ids(35, 101)},
    ),
    "timeout": Category(
        "an operation or wait ran out of time (timed out, time out)",
        {
            "BGL": _ids(31),
            "Mac": _ids(15, 29, 73, 192, 286),
            "Zookeeper": _ids(31),
            "Linux": _ids(112),
            "HPC": _ids(37),
        },
    ),
    "link_up": Category(
        "a network link or interface came up or is available",
        {"HPC": _ids(25, 28, 29, 30), "Mac": _ids(111, 112), "Linux": _ids(23)},
    ),
    "link_down": Category(
        "a network link or interface went down, failed or is in error",
        {"HPC": _ids(21, 22, 24, 27), "Mac": _ids(109, 110), "BGL": _ids(109)},
    ),
    "permission_denied": Category(
        "an access was refused for lack of permission (denied, forbidden, not permitted)",
        {"BGL": _ids(24, 26), "Mac": _ids(21, 51, 52, 297, 299, 300), "Apache": _ids(4)},
    ),
    "not_found": Category(
        "something looked up does not exist (no such file, not found, unknown id)",
        {
            "BGL": _ids(28, 37),
            "Mac": _ids(25, 197),
            "Spark": _ids(19),
            "Hadoop": _ids(28),
            "OpenStack": _ids(33, 42),
            "Apache": _ids(5),
        },
    ),
    "process_crash": Category(
        "a program crashed, panicked, dumped core or exited abnormally",
        {
            "BGL": _ids(34, 67, 108, 111),
            "Linux": _ids(8),
            "Mac": _ids(307),
            "HPC": _ids(39),
            "Zookeeper": _ids(49),
            "Hadoop": _ids(108),
        },
    ),
    "hardware_fault": Category(
        "a hardware component failed, misbehaved or had a (corrected) hardware error",
        {"BGL": _ids(1, 2, 51, 77, 90, 94), "HPC": _ids(13, 34, 35)},
    ),
    "temperature_fan": Category(
        "temperature, thermal state or fan readings",
        {"HPC": _ids(2, 17, 18, 44), "Mac": _ids(323)},
    ),
    "memory_status": Category(
        "how much memory is available, used or free",
        {
            "Spark": _ids(2, 3, 18),
            "OpenStack": _ids(10, 17),
            "Linux": _ids(2, 3, 70),
            "Mac": _ids(282),
        },
    ),
    "service_started": Category(
        "a service, daemon or server component started or is starting",
        {
            "Linux": _ids(38, 49, 58, 64, 65, 85, 92, 93, 94, 95, 106),
            "Windows": _ids(44, 46, 48),
            "Spark": _ids(23, 28, 31, 33, 34),
            "Hadoop": _ids(50, 51, 69, 113),
            "Zookeeper": _ids(47),
        },
    ),
    "service_stopped": Category(
        "a service or component shut down or ended",
        {
            "Linux": _ids(37),
            "Windows": _ids(15, 16, 22, 47),
            "Zookeeper": _ids(45),
            "BGL": _ids(95, 96, 113),
        },
    ),
    "task_started": Category(
        "a task, job or command was assigned, launched or began running",
        {
            "Spark": _ids(11, 24),
            "Hadoop": _ids(14, 58, 59, 62, 104),
            "HPC": _ids(4, 45),
        },
    ),
    "task_succeeded": Category(
        "a task, job, command or instance operation finished successfully",
        {
            "Spark": _ids(1, 9, 25),
            "Hadoop": _ids(20, 100, 103),
            "HPC": _ids(12),
            "OpenStack": _ids(2, 9),
        },
    ),
    "task_failed": Category(
        "a task, command or operation failed or was aborted (not a connection)",
        {
            "Hadoop": _ids(1, 2, 15, 16, 18, 99),
            "HPC": _ids(5, 11, 16),
            "Windows": _ids(19, 21, 38, 43),
        },
    ),
    "data_transfer": Category(
        "a block, bytes or data were sent, received or read",
        {"HDFS": _ids(1, 2, 11, 12, 13), "Spark": _ids(20, 29), "Mac": _ids(92, 99)},
    ),
    "deletion": Category(
        "files, blocks or data were deleted, removed or purged",
        {
            "HDFS": _ids(4, 8, 9),
            "OpenStack": _ids(4, 5, 37),
            "Mac": _ids(69),
            "Windows": _ids(37),
        },
    ),
    "deprecation": Category(
        "a setting or API is deprecated and another should be used",
        {"Spark": _ids(13, 14, 15, 16, 17), "Mac": _ids(74, 98)},
    ),
    "config_setting": Category(
        "a configuration value is set, changed or defaulted",
        {
            "Zookeeper": _ids(3, 4, 27, 28, 48),
            "Spark": _ids(4, 5),
            "Hadoop": _ids(25, 67),
            "Mac": _ids(311),
            "OpenStack": _ids(6, 19),
        },
    ),
    "registration": Category(
        "a component, driver, class or callback was registered",
        {
            "Spark": _ids(21, 32, 36),
            "Linux": _ids(73, 110, 111),
            "Hadoop": _ids(88, 89),
            "Mac": _ids(39, 180),
        },
    ),
    "parse_error": Category(
        "input could not be parsed or recognised (invalid, malformed, unrecognised)",
        {
            "Windows": _ids(18, 20, 50),
            "Mac": _ids(28, 188, 328, 329),
            "BGL": _ids(39, 110),
        },
    ),
    "resource_allocation": Category(
        "resources (containers, blocks, memory, CPUs) were claimed, allocated or assigned",
        {"Hadoop": _ids(13, 46), "HDFS": _ids(7), "OpenStack": _ids(1)},
    ),
    "instance_terminated": Category(
        "an instance, container or process was killed, terminated, destroyed or stopped",
        {"OpenStack": _ids(8, 11, 23), "Hadoop": _ids(34, 60), "Mac": _ids(244)},
    ),
}


def _lines(data_dir: Path, system: str) -> Iterator[tuple[str, str, str]]:
    """(EventId, Content, raw line) of one system's structured CSV, in file order."""
    folder = data_dir / system
    raw = (folder / f"{system}_2k.log").read_text(encoding="utf-8", errors="replace")
    raws = raw.splitlines()
    with (folder / f"{system}_2k.log_structured_corrected.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            yield row["EventId"], row["Content"], raws[int(row["LineId"]) - 1]


def check(categories: dict[str, Category] = CATEGORIES) -> None:
    """Every template in one category at most; no held-out system."""
    seen: dict[tuple[str, str], str] = {}
    for name, cat in categories.items():
        for system, ids in cat.templates.items():
            if system not in data_mod.TRAIN_SYSTEMS:
                raise ValueError(f"{name}: {system} is no train system. Received: {system}")
            for i in ids:
                if (system, i) in seen:
                    raise ValueError(f"{system} {i} is in {seen[system, i]} and {name}")
                seen[system, i] = name


def build(data_dir: Path, per_category: int = PER_CATEGORY) -> list[tuple[str, str, str]]:
    """(category, system, raw line) rows: per category, distinct lines drawn round-robin
    over its templates (first occurrences first), so each template and system counts."""
    check()
    by_template: dict[tuple[str, str], list[str]] = {}
    for system in sorted({s for c in CATEGORIES.values() for s in c.templates}):
        seen: set[str] = set()
        for eid, content, raw in _lines(data_dir, system):
            if content not in seen:
                seen.add(content)
                pool = by_template.setdefault((system, eid), [])
                if len(pool) < PER_TEMPLATE:
                    pool.append(raw)
    rows = []
    for name, cat in CATEGORIES.items():
        # per system, its templates' line lists; drawn system by system, template by template
        queues = {
            s: [list(by_template[s, i]) for i in ids if by_template.get((s, i))]
            for s, ids in cat.templates.items()
        }
        taken = 0
        while taken < per_category and any(any(q) for q in queues.values()):
            for system, pools in queues.items():
                pools[:] = [p for p in pools if p]
                if pools and taken < per_category:
                    rows.append((name, system, pools[0].pop(0)))
                    pools.append(pools.pop(0))
                    taken += 1
    return rows


def read(path: Path = CSV) -> tuple[list[str], list[str], list[str]]:
    """(categories, systems, lines) of the committed dev set."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f)]
    return [r["category"] for r in rows], [r["system"] for r in rows], [r["line"] for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="loghub-2k folder")
    ap.add_argument("--out", type=Path, default=CSV)
    args = ap.parse_args()
    rows = build(args.data)
    with args.out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["category", "system", "line"])
        w.writerows(rows)
    print(f"{len(rows)} lines in {len(CATEGORIES)} categories written to {args.out}")


if __name__ == "__main__":
    main()
