"""A last privacy pass over what the sidecar keeps: cluster exemplars and templates.

Masking turns ASCII numbers, ids, addresses and e-mails into placeholders, but its RE2
rules read ASCII: an e-mail with a Unicode local part or a dot-less domain, full-width
card digits, `password=...` pairs outside structured bodies or a long opaque token can
survive it. Those texts may still be clustered as they are; they are scrubbed here
before any is stored or shown. Only distinct member texts pass through (a few per
cluster), so this is plain Python `re`, Unicode-aware.
"""

from __future__ import annotations

import re

# Any script: `\w` is Unicode. A domain without a dot (`root@localhost`) counts too.
_EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)*")
# What the ASCII rule left of a local part in another script (`josé.garcí<EMAIL>`).
_EMAIL_HEAD = re.compile(r"[\w.+%-]+(?=<EMAIL>)")
# key=value or key: value secrets; a value already masked (`<*>`) is left alone.
_SECRET = re.compile(
    r"(?i)\b(pass(?:word|wd)?|pwd|secret|token|api[_-]?key|access[_-]?key|auth(?:orization)?"
    r"|session(?:id)?|cookie|credentials?|private[_-]?key)(\"?\s*[=:]\s*)"
    r"(\"[^\"]*\"|'[^']*'|(?!<[A-Z*]+>)[^\s&,;]+)"
)
# Card-like digit groups in any script (`\d` is Unicode): 13 to 19 digits, with spaces
# or dashes between groups.
_CARD = re.compile(r"(?<!\w)\d(?:[ -]?\d){12,18}(?!\w)")
# Digits that are not ASCII (full-width, Arabic-Indic, ...): ASCII ones were masked.
_OTHER_DIGITS = re.compile(r"(?:(?![0-9])\d)+")
# Long opaque tokens (keys, session ids, signatures).
_TOKEN = re.compile(r"(?<![\w<])[A-Za-z0-9+/_=-]{32,}")


def scrub(text: str) -> str:
    """`text` with e-mails, secrets, card numbers, non-ASCII digits and long tokens
    replaced by placeholders."""
    text = _EMAIL_HEAD.sub("", _EMAIL.sub("<EMAIL>", text))
    text = _SECRET.sub(r"\1\2<SECRET>", text)
    text = _CARD.sub("<CARD>", text)
    text = _OTHER_DIGITS.sub("<NUM>", text)
    return _TOKEN.sub("<TOKEN>", text)
