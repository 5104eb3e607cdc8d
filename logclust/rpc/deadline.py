"""What a call's deadline leaves for its work: the margin kept for sending the answer.

A batch is recorded only if its caller is still there when the recording starts, less
this margin (`Sidecar.label` asks last thing before recording): an answer that reaches
the caller after its deadline is a failed call to the caller, and its retry would count
the batch again. The margin is a share of the deadline, capped, so that short deadlines
still leave time for the work.
"""

from __future__ import annotations

# The share of a call's deadline, at most `MARGIN_S` seconds, kept for answering.
MARGIN_SHARE = 0.1
MARGIN_S = 0.5


def answer_margin(deadline_s: float) -> float:
    """Seconds of a call's deadline (`deadline_s` from its start) kept for answering."""
    return min(MARGIN_S, MARGIN_SHARE * deadline_s)
