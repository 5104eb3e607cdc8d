"""Free text (prose): telling natural language from log lines, and what places it.

A log line is a template with variables: `Failed password for <USER> from <IP> port <NUM>`.
Prose is a sentence a person wrote: a support message, a feedback form, a chat line. No
template describes it (each wording is its own "template"), so the clusterer places it by
meaning instead (`logclust.cluster.groups`). `is_prose` must not mistake a log line for
prose (that would merge log templates by meaning), so it asks for what logs rarely have:
words that are words only (no `key=value`, paths, identifiers, placeholders), function
words of a sentence, or a script written without spaces (CJK).

`lexical_vector` is the words' part of a prose text's place: hashed word stems, so two
wordings that share their content words land near each other even where the semantic
channel of the embedding is weak.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

# Width of the hashed word vector (`lexical_vector`).
LEXICAL_DIM = 256
# Texts longer than this are read from their first characters only (a 100 KB message is
# still one message; its start says what it is about).
MAX_PROSE_CHARS = 4096

_WORD = re.compile(r"^[\"'(¿¡«]*([^\W\d_]+(?:['’-][^\W\d_]+)*)[\"')»]*[.,!?;:…]*$")
_SENTENCE_END = re.compile(r"[.!?…。！？]\s*$")
# Scripts written without spaces between words (CJK ideographs, kana, hangul).
_NO_SPACE_SCRIPT = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
PLACEHOLDER = re.compile(r"<[A-Z*][A-Z0-9_*]*>")
_FUNCTION_WORDS = frozenset(
    (
        "a an the i i'm im my me we our you your it it's its is are was were be been am "
        "and but or not no so to of for with on in at by about from this that these "
        "those have has had do does did can could would should will please why where "
        "when how what who there here very really just still yet again thanks thank "
        "le la les un une et est je mon ma der die das und ist ich el los y es"
    ).split()
)
# Words of a person writing: a log line rarely says "I", "you" or "please".
_PERSON_WORDS = frozenset(
    (
        "i i'm im i've ive my me mine we our you your you're please thanks thank hi "
        "hello pls plz je mon ma ich mein bitte danke yo mi por favor gracias "
        "я мой моя мне мы наш вы ваш пожалуйста спасибо"
    ).split()
)
# Words that are names in code or logs: camelCase, snake_case, dotted names, paths,
# a `component:` prefix, brackets.
_IDENTIFIER = re.compile(r"[a-z][A-Z]|_|\w\.\w|[/\\\[\]{}()]|::")
_STOP = _FUNCTION_WORDS | frozenset("after before also any all more most some than then".split())
_EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")


def is_prose(masked: str) -> bool:
    """Whether a masked text is free text rather than a log line or a structured body.

    Prose: at least 3 words, >= 90% of them plain words (letters, apostrophes, hyphens,
    sentence punctuation, emoji), at most one placeholder per 8 words, no word that
    looks like an identifier (`camelCase`, `snake_case`, `a.b`, a path, `name:`), and the
    voice of a person: a word such as "I", "my", "you", "please", "thanks", or (3 words
    or more) a sentence end with a function word. A text in a script written without
    spaces (CJK) is prose when it holds 4 such characters and no structure.
    """
    s = masked[:MAX_PROSE_CHARS].strip()
    if not s or s[0] in "{[<" or "=" in s or "\t" in s:
        return False
    if len(_NO_SPACE_SCRIPT.findall(s)) >= 4:
        return len(re.findall(r"[/\\|:=<>{}\[\]_]", s)) <= 1
    words = s.split()
    if len(words) < 3 or any(_IDENTIFIER.search(w) for w in words):
        return False
    placeholders = len(PLACEHOLDER.findall(s))
    if placeholders * 8 > len(words):
        return False
    plain = [m.group(1).lower() for w in words if (m := _WORD.match(w))]
    emoji = sum(1 for w in words if _EMOJI.search(w))
    if (len(plain) + emoji + placeholders) < 0.9 * len(words) or len(plain) < 2:
        return False
    caps = sum(1 for w in words if len(w) > 1 and w.isupper())
    if caps * 3 > len(words) or caps >= 2:  # ERROR IN CONTACTING RM, acronyms of systems
        return False
    if any(w in _PERSON_WORDS for w in plain):  # "Urgent: I want ..." keeps its colon
        return True
    # A `key: value` or a `COMPONENT:` prefix; "Urgent:" opening a sentence is prose.
    head = words[0]
    if any(w.endswith(":") for w in words[1:]) or (head.endswith(":") and head.isupper()):
        return False
    ends = bool(_SENTENCE_END.search(s))
    return ends and len(words) >= 3 and any(w in _FUNCTION_WORDS for w in plain)


def _stem(word: str) -> str:
    """A crude suffix stem, so that "delivered", "delivery" and "deliveries" agree."""
    for suffix in ("ies", "ied", "ing", "ed", "es", "ery", "ly", "s", "y", "e"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> list[str]:
    """The stems of a prose text's content words (function words dropped); for a text in
    a script written without spaces, its character pairs."""
    s = text[:MAX_PROSE_CHARS].lower()
    if _NO_SPACE_SCRIPT.search(s):
        chars = [c for c in s if c.isalnum()]
        return [a + b for a, b in zip(chars, chars[1:], strict=False)]
    words = re.findall(r"[^\W\d_]+", s)
    return [_stem(w) for w in words if w not in _STOP and len(w) > 1]


def lexical_vector(text: str, dim: int = LEXICAL_DIM) -> np.ndarray:
    """`(dim,)` float32 unit vector of the text's content-word stems, hashed (each
    distinct stem counts once: a word repeated a thousand times weighs as one). Zero when
    the text has no content word."""
    out = np.zeros(dim, np.float32)
    for w in set(content_words(text)):
        h = zlib.crc32(w.encode())
        out[h % dim] += 1.0 if (h >> 16) & 1 else -1.0
    n = float(np.linalg.norm(out))
    return out / n if n > 0 else out
