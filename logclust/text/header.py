"""A masked log line's message: the header a logger writes before it, found without a format.

Log lines start with fields their logger adds: times, dates, host names, process ids,
levels, a component and a separator (`Jun <NUM> <TS> combo sshd[<NUM>]: ...`,
`<TS> - INFO [...] - ...`, `<NUM> <NUM> <NUM> INFO dfs.DataNode: ...`). Those fields say
which system wrote the line, not what it means. Kept, they split one template into many
(a month, a host or a process name that changes) and dominate the line's embedding: two
lines that mean the same thing in two formats land far apart. So the mask cache cuts
each masked line to its message (`logclust.text.mask_cache`), unless the sidecar is told
to `--keep-headers`: templates, clusters and embeddings are of messages, as loghub's
ground truth templates are.

`message` scans the first tokens of a masked line once, left to right, for the fields
every common format is made of, and cuts after the last one it is sure of:

* times and numbers (`<TS>`, `<NUM>`, `<ID>`, `<IP>`, month and weekday names; not a
  `<PATH>`, `<URL>`, `<EMAIL>`, `<MAC>` or `<BOOL>`) before any level or separator;
* a level word in capitals (`INFO`, `Warn`, `FATAL:`; any case in brackets: `[error]`),
  at most two words after the last field (`RAS KERNEL INFO`), and a one-letter level
  right after it and before a tag (`<NUM> <NUM> D WindowManager:`);
* a bracketed field (`[main]`, `[<TS>]`; not a JSON array or a list), right after the cut
  or one word after it;
* a separator `-` or `|` after a field, two words after it at most
  (`chrome.exe *<NUM> - ...`, `<TS> - app.module - INFO - ...`);
* a component ending in `:` (`dfs.DataNode$PacketResponder:`, `WindowManager:`) right
  after a level, or a program's (`sshd[<NUM>]:`, `kernel[<NUM>]:`, and a bare name after
  syslog's date and host: `Jun <NUM> <TS> combo logrotate:`) at most two words after the
  line's leading times and numbers, or klog's source position (`controller.go:<NUM>]`);
  the scan ends there.

A cut needs two tokens or more, among them a leading time, or two leading numbers and a
level, bracket or separator, or a time and a separator after a level (or a bracketed
level that opens the line). A line that is already a message (`[<TS>] <<<< Boss >>>> ...`,
`<NUM> <ID> EDRAM error(s) ...`, `<IP> "GET ..."`, `ERROR IN CONTACTING RM.`,
`Notification time out: <NUM>`, a JSON body, prose) is left whole, and so is a line with
nothing but fields after the cut, or one token after a separator
(`<NUM>@<TS>:<TS> PopulateComponentFamiliesKey - Begin`). Formats the scan does not know
(fields joined without spaces, fixed columns of words) keep their header.
"""

from __future__ import annotations

import functools
import itertools
import re

# Tokens are runs of characters other than spaces and `|`, and `|` itself (fields joined
# by bars: `<TS>|Step_LSC|<NUM>|...`); a bracketed field may hold spaces (one level of
# nested brackets: `[QuorumPeer[myid=<NUM>]/...]`).
_TOKEN = re.compile(r"\[[^\]\[]{0,200}(?:\[[^\]\[]{0,200}\][^\]\[]{0,200})*\][^\s|]*|[^\s|]+|\|")
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")
# What a header's fields mask to; a path, URL, address or boolean is the message's.
_DATA = re.compile(r"<(?:PATH|URL|EMAIL|MAC|BOOL)>")
_TIME = re.compile(r"<TS>|<DATE>|<TIME>")
_ALNUM = re.compile(r"[^\W_]")
# A component: a name (dots, `$`, `@`, slashes, `(...)`, `[<NUM>]` allowed) and one colon;
# a program's, not after a level: a pid or a dotted or qualified name (`sshd[<NUM>]:`).
_COMPONENT = re.compile(r"[\w.$@/()\[\]<>#-]*\w[\w.$@/()\[\]<>#-]*:")
_PROGRAM = re.compile(r"[\[(.$/]")
# klog's source position ends its header: `I1207 <TS> <NUM> controller.go:<NUM>] ...`
_SOURCE_LINE = re.compile(r"[\w./-]+\.\w+:<NUM>\]")

_LEVELS = frozenset(
    "trace debug info information notice warn warning error err fatal critical crit severe "
    "fine finer finest verbose log panic".split()
)
_LETTER_LEVELS = frozenset("VDIWEF")  # Android's logcat
_CALENDAR = frozenset(
    "jan feb mar apr may jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun".split()
)
_SEPARATORS = frozenset({"-", "--", "|", "*"})

SCAN_TOKENS = 14  # a header is at most this many tokens
SCAN_CHARS = 500  # ... within this many characters

# The kinds of token the scan tells apart.
_TIME_FIELD, _NUMBER, _LEVEL, _BRACKET, _SEPARATOR, _WORD = range(6)


@functools.lru_cache(maxsize=2048)  # tokens repeat: `<NUM>`, `<TS>`, `INFO`, hosts
def _kind(token: str) -> int:
    bare = token.rstrip(",;")
    low = bare.lower()
    level = bare.removesuffix(":")  # `LOG:`, `FATAL:` as PostgreSQL writes them
    if _TIME.search(bare) or low in _CALENDAR:
        return _TIME_FIELD
    if bare.startswith("[") and bare.endswith("]"):
        if low[1:-1] in _LEVELS:
            return _LEVEL
        # a JSON array or a list is data: `[{"op": ...}]`, `["login", "bob"]`
        return _WORD if any(c in bare for c in '{"') or ", " in bare else _BRACKET
    # placeholders and digits with at most one letter left (`<ID>-<ID>-C:<ID>`, `*<NUM>`);
    # one that ends in a colon names what follows (`<ID>: <NUM>.<ID> country code ...`)
    if (
        (bare.isdigit() or _PLACEHOLDER.search(bare))
        and not bare.endswith(":")
        and not _DATA.search(bare)
        and len(_ALNUM.findall(_PLACEHOLDER.sub("", bare)))
        <= (3 if len(_PLACEHOLDER.findall(bare)) >= 2 else 1)
    ):
        return _NUMBER
    # bare levels are written in capitals (`INFO`, `Info`); `error fetching` is a message
    if (level.lower() in _LEVELS and (level.isupper() or level.istitle())) or (
        bare in _LETTER_LEVELS
    ):
        return _LEVEL
    if bare in _SEPARATORS:
        return _SEPARATOR
    return _WORD


def message(text: str) -> str:
    """The message of a masked line: `text` from the first token after its header, or the
    whole of `text` when no header is found (module docstring)."""
    tokens = list(itertools.islice(_TOKEN.finditer(text, 0, SCAN_CHARS), SCAN_TOKENS + 1))
    cut = _header_tokens(tokens)
    if not 0 < cut < len(tokens):
        return text
    rest = text[tokens[cut].start() :]
    if rest.startswith(("{", "[{", '["', "<?xml")):
        return text  # a structured body follows a label: the label tells bodies apart
    if len(tokens) <= SCAN_TOKENS and (
        all(_kind(m.group()) != _WORD for m in tokens[cut:])
        or (len(tokens) - cut < 2 and _kind(tokens[cut - 1].group()) == _SEPARATOR)
    ):
        return text  # header fields only after the cut, or one token after a separator
    return rest


def _header_tokens(tokens: list[re.Match[str]]) -> int:
    """How many of `tokens` are header (0: none found)."""
    cut = 0
    leading = 0  # times and numbers before any word, level or separator
    timed = False  # a time among them
    syslog = False  # a month or weekday among them: `Jun <NUM> <TS> host program: ...`
    opened = False  # the line opens with a bracketed level (`[ERROR] disk full`)
    marked = False  # a level, a bracketed field or a separator is among the cut tokens
    words = 0  # plain words since the last cut
    leveled = False  # past a level or a separator
    separated = False
    late_time = False  # a time after a level (`INFO [main] <TS> Daemon.java:<NUM> - ...`)
    for i, match in enumerate(tokens[: len(tokens) - 1]):
        token = match.group()
        kind = _kind(token)
        if kind == _LEVEL and token in _LETTER_LEVELS and not tokens[i + 1].group().endswith(":"):
            kind = _WORD  # a one-letter level comes before a tag (`D WindowManager:`)
        if kind == _WORD:
            if cut and (timed or leading >= 2) and words <= 1 and _SOURCE_LINE.fullmatch(token):
                return i + 1
            if (
                cut
                and (timed or leading >= 2)
                and not separated
                and words <= (0 if leveled else 2)
                and not token.endswith("::")
                and _COMPONENT.fullmatch(token)
                and (leveled or _PROGRAM.search(token) or (syslog and words == 1))
                and _ALNUM.search(_PLACEHOLDER.sub("", token))
            ):
                return i + 1
            words += 1
            if words > 2:
                break
        elif kind == _SEPARATOR:
            if i == 0:
                cut = 1
            elif cut and words <= 2:
                cut, words, leveled, separated, marked = i + 1, 0, True, True, True
        elif kind == _LEVEL:
            opened = opened or (i == 0 and token.startswith("["))
            # a one-letter level only right after the fields (`<TS> <NUM> <NUM> D Tag:`)
            most = 0 if separated or token in _LETTER_LEVELS else 2
            if words <= most and (cut or i == 0):
                cut, words, leveled, marked = i + 1, 0, True, True
        elif kind == _BRACKET:
            if words <= 1 and cut == i - words:
                cut, words, marked = i + 1, 0, True
        elif leveled or words:  # a time or a number past the leading fields: the message's
            words += 1
            late_time = late_time or kind == _TIME_FIELD
        else:  # a leading time or number
            leading += 1
            timed = timed or kind == _TIME_FIELD
            syslog = syslog or token.lower() in _CALENDAR
            cut = i + 1
    # One field alone (`<TS> msg`, `[<TS>] msg`) is no header to cut: a placeholder that
    # every line holds splits no template, and messages start with times and counts too.
    if opened or (cut >= 2 and (timed or (leading >= 2 and marked) or (late_time and separated))):
        return cut
    return 0
