from __future__ import annotations

import numpy as np

from logclust.text.prose import is_prose, lexical_vector


def test_prose_is_told_from_log_lines() -> None:
    prose = [
        "My package arrived damaged and the box was crushed",
        "Hi, I want a refund for my order. Thanks.",
        "Мой заказ пришёл повреждённым, пожалуйста помогите",
        "我的包裹还没有到已经两周了",
        "The delivery was late and the courier was rude.",
    ]
    logs = [
        "Failed password for root from <IP> port <NUM> ssh2",
        "Interrupted while waiting for message on queue",
        "ERROR IN CONTACTING RM.",
        "ciod: failed to read message prefix on control stream",
        "isSimPinSecure mSimDatas is null or empty",
        "session opened for user root by (uid=<NUM>)",
        '{"a": "I want my money back"}',
        "",
    ]
    assert all(is_prose(t) for t in prose)
    assert not any(is_prose(t) for t in logs)


def test_lexical_vector_counts_each_word_once() -> None:
    a = lexical_vector("refund refund refund refund please")
    b = lexical_vector("refund")
    assert np.allclose(a, b) and abs(float(np.linalg.norm(a)) - 1) < 1e-6
    assert not lexical_vector("the the the").any()  # no content word
