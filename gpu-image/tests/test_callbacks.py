"""The callback client: order, seq, signing, retries, stop and superseded."""

from __future__ import annotations

import json
import threading

from brightrun_worker import signing
from brightrun_worker.callbacks import CallbackClient

KEY = b"s" * 32


class Transport:
    def __init__(self, answers=None) -> None:
        self.calls: list[tuple[dict, bytes]] = []
        self.answers = list(answers or [])
        self.lock = threading.Lock()

    def __call__(self, url, body, headers, timeout):
        with self.lock:
            self.calls.append((headers, body))
            a = self.answers.pop(0) if self.answers else (200, b'{"action":"continue"}')
        if isinstance(a, Exception):
            raise a
        return a


def client(t: Transport, **kw) -> CallbackClient:
    return CallbackClient("http://127.0.0.1:1/cb", KEY, "job_9", 3, transport=t, sleep=lambda s: None, **kw)


def test_messages_are_ordered_signed_and_numbered() -> None:
    t = Transport()
    c = client(t)
    for i in range(5):
        c.send("stage", {"stage": "download"})
    c.send("completed", {"final_loss": 1.0}, wait=True)
    c.close()
    docs = [json.loads(b) for _, b in t.calls]
    assert [d["seq"] for d in docs] == [1, 2, 3, 4, 5, 6]
    assert all(d["job_id"] == "job_9" and d["attempt"] == 3 and d["version"] == 1 for d in docs)
    assert docs[0]["sent_at"].endswith("Z")
    for h, b in t.calls:
        assert signing.verify(KEY, h, b)
    assert t.calls[0][0]["webhook-id"] == "job_9.3.1"


def test_network_errors_and_5xx_are_retried_with_the_same_id() -> None:
    t = Transport([OSError("refused"), (503, b""), (200, b'{"action":"continue"}')])
    c = client(t)
    assert c.send("stage", {"stage": "load"}, wait=True)
    c.close()
    assert len(t.calls) == 3
    assert len({h["webhook-id"] for h, _ in t.calls}) == 1
    assert not c.stop.is_set()


def test_retries_are_bounded() -> None:
    t = Transport([(500, b"")] * 100)
    c = client(t, retries=2, final_retries=3)
    assert not c.send("failed", {"code": "internal"}, wait=True)  # 1 + 3 tries
    c.send("progress", {"step": 1})  # 1 + 2 tries
    c.close()
    assert len(t.calls) == 7


def test_other_4xx_are_not_retried() -> None:
    t = Transport([(401, b'{"error":{"code":"unauthorized"}}')])
    c = client(t)
    assert not c.send("stage", {"stage": "load"}, wait=True)
    c.close()
    assert len(t.calls) == 1 and not c.stop.is_set()


def test_stop_action_sets_stop_with_reason() -> None:
    t = Transport([(200, b'{"action":"stop","reason":"cancelled by user"}')])
    c = client(t)
    c.send("progress", {"step": 1}, wait=True)
    assert c.stop.is_set() and c.stop_reason == "cancelled by user" and not c.superseded
    c.send("failed", {"code": "cancelled"}, wait=True)  # still delivered
    c.close()
    assert len(t.calls) == 2


def test_409_marks_superseded_and_drops_later_messages() -> None:
    t = Transport([(409, b'{"error":{"code":"conflict","message":"attempt 3 superseded by 4"},"action":"stop"}')])
    c = client(t)
    c.send("progress", {"step": 1}, wait=True)
    assert c.superseded and c.stop.is_set()
    assert c.stop_reason == "attempt 3 superseded by 4"
    assert not c.send("failed", {"code": "cancelled"}, wait=True)
    c.close()
    assert len(t.calls) == 1


def test_send_does_not_block_on_a_slow_server() -> None:
    gate = threading.Event()

    def slow(url, body, headers, timeout):
        gate.wait(5)
        return 200, b"{}"

    c = CallbackClient("http://x/cb", KEY, "j", 1, transport=slow)
    import time

    t0 = time.monotonic()
    for _ in range(10):
        c.send("progress", {"step": 1})
    assert time.monotonic() - t0 < 0.5
    gate.set()
    c.close()


def test_a_request_returns_the_answer_and_keeps_the_order_and_numbering() -> None:
    t = Transport([(200, b""), (503, b""), (200, b'{"urls":{"a":{"url":"https://x/a","method":"GET"}}}')])
    c = client(t)
    c.send("stage", {"stage": "download"})
    status, body = c.request("urls", {"purpose": "dataset", "files": [{"name": "a"}]})
    c.close()
    assert status == 200 and json.loads(body)["urls"]["a"]["method"] == "GET"
    docs = [json.loads(b) for _, b in t.calls]
    assert [d["seq"] for d in docs] == [1, 2, 2] and docs[2]["type"] == "urls"
    assert t.calls[1][0]["webhook-id"] == t.calls[2][0]["webhook-id"] == "job_9.3.2"
    assert signing.verify(KEY, t.calls[2][0], t.calls[2][1])


def test_a_refused_request_returns_its_status_and_501_is_not_retried() -> None:
    t = Transport([(501, b'{"error":{"code":"not_implemented"}}'), (404, b"{}")])
    c = client(t)
    assert c.request("urls", {"purpose": "dataset"})[0] == 501
    assert c.request("urls", {"purpose": "dataset"})[0] == 404
    c.close()
    assert len(t.calls) == 2 and not c.stop.is_set()


def test_a_request_answered_with_stop_sets_stop() -> None:
    t = Transport([(200, b'{"action":"stop","reason":"cancelled by the user","urls":{}}')])
    c = client(t)
    status, _ = c.request("urls", {"purpose": "artifact"})
    c.close()
    assert status == 200 and c.stop.is_set() and c.stop_reason == "cancelled by the user"
