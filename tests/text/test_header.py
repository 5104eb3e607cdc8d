"""The header a logger writes before a masked line's message, found without a format."""

from __future__ import annotations

import pytest

from logclust.text.header import SCAN_CHARS, message

# (masked line, its message): the formats of loghub's systems and of common loggers.
HEADERS = [
    # syslog: month, day, time, host, program[pid]:
    (
        "Jun <NUM> <TS> combo sshd(pam_unix)[<NUM>]: authentication failure; uid=<NUM>",
        "authentication failure; uid=<NUM>",
    ),
    (
        "Dec <NUM> <TS> LabSZ sshd[<NUM>]: Invalid user webmaster from <IP>",
        "Invalid user webmaster from <IP>",
    ),
    # Android logcat: date, time, pid, tid, one-letter level, tag:
    (
        "<NUM>-<NUM> <TS> <NUM> <NUM> D WindowManager: printFreezingDisplayLogs",
        "printFreezingDisplayLogs",
    ),
    # HDFS / Spark / Hadoop: numbers or a time, level, [thread], component:
    (
        "<NUM> <NUM> <NUM> INFO dfs.DataNode$PacketResponder: Received block blk_<NUM>",
        "Received block blk_<NUM>",
    ),
    (
        "<TS> INFO [IPC Server handler <NUM> on <NUM>] org.a.Listener: Progress of TaskAttempt",
        "Progress of TaskAttempt",
    ),
    # Zookeeper: time - level [thread] - message (a colon in the message stays)
    (
        "<TS> - INFO [/<IP>:QuorumCnxManager$Listener@<NUM>] - Notification time out: <NUM>",
        "Notification time out: <NUM>",
    ),
    # Apache: [time] [level]
    ("[<TS>] [notice] workerEnv.init() ok <PATH>", "workerEnv.init() ok <PATH>"),
    # Proxifier: [time] program - message
    (
        "[<NUM> <TS>] chrome.exe - <HOST>:<NUM> open through proxy <HOST>:<NUM> HTTPS",
        "<HOST>:<NUM> open through proxy <HOST>:<NUM> HTTPS",
    ),
    # Python logging, logback, fields joined by bars:
    (
        "<TS> - myapp.module - INFO - Connection refused by upstream",
        "Connection refused by upstream",
    ),
    (
        "<TS> [main] INFO com.foo.Bar - Connection refused by upstream",
        "Connection refused by upstream",
    ),
    ("<TS> WARN [worker-<NUM>] c.e.Pool: pool exhausted", "pool exhausted"),
    ("<NUM>-<TS>|Step_LSC|<NUM>|onStandStepChanged <NUM>", "onStandStepChanged <NUM>"),
    # klog, PostgreSQL, Cassandra, Kafka, Redis, systemd
    (
        "<ID> <TS> <NUM> controller.go:<NUM>] Starting workers for node controller",
        "Starting workers for node controller",
    ),
    (
        '<TS> UTC [<NUM>] FATAL: password authentication failed for user "bob"',
        'password authentication failed for user "bob"',
    ),
    (
        "INFO [main] <TS> CassandraDaemon.java:<NUM> - Starting up the daemon",
        "Starting up the daemon",
    ),
    (
        "[<TS>] INFO [KafkaServer id=<NUM>] started (kafka.server.KafkaServer)",
        "started (kafka.server.KafkaServer)",
    ),
    ("<NUM>:M <NUM> Dec <NUM> <TS> * Ready to accept connections", "Ready to accept connections"),
    (
        "Dec <NUM> <TS> host systemd[<NUM>]: Started Session <NUM> of user root.",
        "Started Session <NUM> of user root.",
    ),
    # a level that starts the line
    ("[ERROR] disk full on <PATH>", "disk full on <PATH>"),
]

# Lines that are messages already: left whole.
WHOLE = [
    # a level word alone is no header: messages start with them too
    "WARN could not find file <PATH>",
    "ERROR IN CONTACTING RM.",
    "Error returned from iconservicesagent: (null)",
    "<HOST>:<NUM> error : A connection request was canceled before the completion.",
    "<NUM> total interrupts. <NUM> critical input interrupts.",
    "CPU: <ID> I cache: <ID>, <ID> D cache: <ID>",
    "[HID] [ATC] Service::processWakeReason Wake reason: Host (<HEX>)",
    "<ID>: <NUM>.<ID> country code set to '<ID>'.",
    # one field alone: times and counts start messages too
    "[<TS>] <<<< Boss >>>> figPlaybackBossPrerollCompleted: unexpected preroll",
    "<TS> : BTLE scanner Powered On",
    "<NUM>@<TS>:<TS> CSI perf trace:",
    "<NUM> <ID> EDRAM error(s) (dcr <HEX>) detected and corrected",
    "<NUM>@<TS>:<TS> PopulateComponentFamiliesKey - Begin",
    "Notification time out: <NUM>",
    '<IP> "GET <PATH> HTTP/<NUM>" status: <NUM> len: <NUM>',
    "dial tcp <IP>: connect: connection refused",
    "<NUM> Unauthorized: invalid credentials for user bob",
    "[instance: <UUID>] VM Resumed (Lifecycle Event)",
    '{"level": <*>, "msg": <*>}',
    "product_id=<*>&quantity=<NUM>",
    "Hi, my parcel arrived damaged: the box was crushed",
    "ERROR: could not extend file base/<NUM>/<NUM>: No space left on device",
    "java.io.FileNotFoundException: <PATH> (No such file or directory)",
]


@pytest.mark.parametrize(("line", "expected"), HEADERS)
def test_header_is_cut_before_the_message(line: str, expected: str) -> None:
    assert message(line) == expected


@pytest.mark.parametrize("line", WHOLE)
def test_a_message_without_header_is_left_whole(line: str) -> None:
    assert message(line) == line


@pytest.mark.parametrize(
    "line", ["", " ", "x", "<TS>", "<TS> <NUM>", "Jun <NUM> <TS>", "[<TS>] [error]", "- - -"]
)
def test_a_line_that_is_all_header_is_left_whole(line: str) -> None:
    # Nothing would be left to embed: the line stays as it is.
    assert message(line) == line


def test_only_the_start_of_a_long_line_is_scanned() -> None:
    body = "word " * 40_000  # 200 KB of message
    assert message("<TS> INFO app.Main: " + body) == body
    # a header past the scanned characters is not looked for
    late = "x" * (SCAN_CHARS + 10) + " <TS> INFO app.Main: done"
    assert message(late) == late


@pytest.mark.parametrize(
    "line",
    [
        "<TS> INFO app: 登录失败，用户名或密码错误",
        "<TS> ERROR Ошибка подключения к базе данных",
        "<TS> WARN 🔥🔥🔥 disk on fire",
        "\x00\x01 <TS> INFO \ufffd\ufffd: binary",
    ],
)
def test_other_scripts_and_odd_characters(line: str) -> None:
    out = message(line)
    assert out and line.endswith(out)
    assert not out.startswith("<TS>")


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ('<TS> request: {"amount": <NUM>}', '<TS> response: {"amount": <NUM>}'),
        ('<TS> INFO request: {"amount": <NUM>}', '<TS> INFO response: {"amount": <NUM>}'),
        ("<TS> Success: user created", "<TS> Failure: user created"),
        ("<TS> order <NUM>: shipped", "<TS> invoice <NUM>: shipped"),
        ("<TS> cpu load: <NUM> percent", "<TS> disk usage: <NUM> percent"),
        ("<TS> <IP> login: failed", "<TS> <IP> payment: failed"),
        ("<TS> <PATH> access denied", "<TS> <EMAIL> access denied"),
        ('<TS> [{"op": <*>}] applied', '<TS> [{"from": <*>, "op": <*>}] applied'),
        ('<TS> ["login", "bob"] ok', '<TS> ["logout", "bob"] ok'),
        ("<TS> error fetching user <NUM>", "<TS> info fetching user <NUM>"),
        ("<TS> I think the server is down", "<TS> V think the server is down"),
    ],
)
def test_words_that_tell_messages_apart_are_not_cut(one: str, other: str) -> None:
    """Labels, data placeholders, lists and lower-case words are the message's: cutting
    them would merge two kinds."""
    assert message(one) != message(other)
