"""Fuzzing the control API: any bytes a client may send, over a real socket.

A real :class:`~pdm.service.api.ControlAPI` on loopback, in this process, in front of a test
double of the service (the one of ``test_service_api.py``, with model uploads unpacked by the
real :func:`~pdm.service.app.extract_bundle` into a fresh directory). Hypothesis builds
requests that are *almost* right (real routes and keys with one part wrong: a method, a
header, a length, a token, a JSON value, a tar.gz) as well as garbage. Every request gets a
well-formed answer with a one-line JSON error — or the connection is closed — never a 500,
never an action without the token when the API has one, never memory beyond a bound, and
the API answers the next request.

The budget is the ``fuzz`` profile of tests/conftest.py: short by default, long with
``PDM_FUZZ_PROFILE=long`` (see the README).
"""

from __future__ import annotations

import gzip
import json
import socket
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import fuzz_settings
from hypothesis import event, given
from hypothesis import strategies as st
from test_service_api import TOKEN, FakeService
from test_service_models import _tgz

from pdm.service.api import ControlAPI, Readable
from pdm.service.app import extract_bundle  # imported here: not counted in a request's heap

pytestmark = pytest.mark.fuzz

#: Peak Python heap of one request: the body limit (64 KiB), the drain of a refused body
#: (1 MiB), a small upload unpacked; far above that, something grows with the input.
HEAP_LIMIT = 16 << 20
#: What an answer may be. 500 never: the double never raises.
STATUSES = {200, 202, 400, 401, 403, 404, 405, 408, 409, 411, 413, 414, 415, 431, 501, 503}


class Backend(FakeService):
    """The API's double, recording every action that would change something."""

    def __init__(self) -> None:
        super().__init__()
        self.actions: list[str] = []

    def acknowledge(self, machine: str, by: str, comment: str) -> str:
        msg = super().acknowledge(machine, by, comment)
        self.actions.append("ack")
        return msg

    def promote(self, machine: str, by: str, comment: str = "", force: bool = False) -> Any:
        if machine not in self.machines:
            raise KeyError(machine)
        self.actions.append("promote")
        return {"machine": machine, "message": "promoted"}

    def rollback(self, machine: str, by: str, comment: str = "") -> Any:
        if machine not in self.machines:
            raise KeyError(machine)
        self.actions.append("rollback")
        return {"machine": machine, "message": "rolled back"}

    def upload_candidate(self, machine: str, body: Readable) -> Any:
        if machine not in self.machines:
            raise KeyError(machine)
        with tempfile.TemporaryDirectory() as d:
            names = extract_bundle(body, Path(d))  # ValueError: 400
        self.actions.append("upload")
        return {"machine": machine, "candidate": "x", "files": names}


@pytest.fixture(scope="module")
def apis() -> Iterator[dict[str, Any]]:
    """Two APIs for the module (Hypothesis runs many examples on each): without a token
    (loopback) and with one; short socket timeouts, so a body that never comes is quick."""
    open_b, locked_b = Backend(), Backend()
    with (
        ControlAPI(open_b, port=0, timeout_s=0.3) as open_api,
        ControlAPI(locked_b, port=0, timeout_s=0.3, token=TOKEN) as locked_api,
    ):
        yield {
            "open": (open_api, open_b),
            "locked": (locked_api, locked_b),
        }


segments = st.sampled_from(
    ["health", "status", "metrics", "ack", "models", "candidate", "promote", "rollback",
     "pump-1", "fan-2", "nope", "", "..", "%2F", "%00", "pump%2D1", "é", "a" * 300]
)  # fmt: skip
paths = st.builds(
    lambda parts, q: "/" + "/".join(parts) + (f"?{q}" if q else ""),
    st.lists(segments, min_size=1, max_size=4),
    st.sampled_from(["", "x=1", "by=ana", "%%", "a=" + "b" * 50]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=10,
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda d: json.dumps(d).encode(),
        st.dictionaries(st.sampled_from(["by", "comment", "force", "x"]), json_values, max_size=4),
    ),
    st.builds(
        _tgz,
        st.dictionaries(
            st.sampled_from(["model.json", "model.onnx", "model.sig", "../x", "/etc/x", "a/b"]),
            st.binary(max_size=64),
            max_size=3,
        ),
    ),
    st.builds(gzip.compress, st.binary(max_size=200)),
)


ROUTES = {
    "/health": "GET",
    "/status": "GET",
    "/status/pump-1": "GET",
    "/metrics": "GET",
    "/ack/pump-1": "POST",
    "/models/pump-1/promote": "POST",
    "/models/pump-1/rollback": "POST",
    "/models/pump-1/candidate": "PUT",
}
good_json = st.builds(
    lambda by, comment, force, extra: json.dumps(
        {"by": by, "comment": comment, **({"force": force} if force is not None else {}), **extra}
    ).encode(),
    st.one_of(st.just("ana"), st.text(max_size=80)),
    st.one_of(st.just(""), st.text(max_size=600)),
    st.one_of(st.none(), st.booleans(), json_values),
    st.dictionaries(st.sampled_from(["x", "by"]), json_values, max_size=1),
)


def _often(good: Any, bad: Any) -> Any:
    """``good`` three times in four, else ``bad``: requests mostly right, one part wrong."""
    return st.one_of(good, good, good, bad)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    path = draw(_often(st.sampled_from(sorted(ROUTES)), paths))
    route = path.split("?")[0]
    right = ROUTES.get(route, "GET")
    method = draw(
        _often(
            st.just(right),
            st.sampled_from(
                ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "G T", "\x00"]
            ),
        )
    )
    ctype_ok = "application/gzip" if right == "PUT" else "application/json"
    body = draw(_often(good_json if right == "POST" else bodies, bodies))
    headers = []
    host = draw(
        _often(
            st.sampled_from(["127.0.0.1", "localhost:8470"]),
            st.sampled_from(["", "evil.example", "[::1]"]),
        )
    )
    if host:
        headers.append(("Host", host))
    ctype = draw(
        _often(
            st.just(ctype_ok),
            st.sampled_from(["", "text/plain", "application/json; x=1", "application/x-gzip"]),
        )
    )
    if ctype:
        headers.append(("Content-Type", ctype))
    length = draw(
        _often(
            st.just("exact"), st.sampled_from(["none", "short", "-1", "x", "99999999999", "1e3"])
        )
    )
    if length == "exact":
        headers.append(("Content-Length", str(len(body))))
    elif length == "short":
        headers.append(("Content-Length", str(max(0, len(body) - 1))))
    elif length != "none":
        headers.append(("Content-Length", length))
    if draw(st.integers(0, 9)) == 0:
        headers.append(("Transfer-Encoding", "chunked"))
    auth = draw(
        _often(
            st.just(f"Bearer {TOKEN}"),
            st.sampled_from(["", "Bearer wrong", "Basic eA==", "Bearer", f"bearer {TOKEN} x"]),
        )
    )
    if auth:
        headers.append(("Authorization", auth))
    for _ in range(draw(st.integers(0, 1))):
        headers.append(
            (draw(st.text("abcX-", min_size=1, max_size=10)), draw(st.text(max_size=20)))
        )
    head = f"{method} {path} HTTP/1.{draw(st.sampled_from(['0', '1']))}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("utf-8", "replace") + body


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    return out


@fuzz_settings()
@given(request=requests(), which=st.sampled_from(["open", "locked"]))
def test_every_request_gets_a_one_line_answer_and_no_action_without_the_token(
    apis: dict[str, Any], request: bytes, which: str
) -> None:
    api, backend = apis[which]
    before = len(backend.actions)
    token_ok = f"\r\nAuthorization: Bearer {TOKEN}\r\n".encode() in request
    tracemalloc.start()
    try:
        reply = _exchange(api.port, request)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < HEAP_LIMIT, f"peak heap {peak} bytes"
    if reply:
        status_line, _, rest = reply.partition(b"\r\n")
        version, status, *_ = status_line.split(b" ", 2)
        assert version in (b"HTTP/1.0", b"HTTP/1.1"), status_line
        code = int(status)
        event(f"{which} {code}")
        assert code in STATUSES, reply[:300]
        _, _, body = rest.partition(b"\r\n\r\n")
        if code >= 400 and body:
            err = json.loads(body)["error"]
            assert err and "\n" not in err and "Traceback" not in err
        if which == "locked" and code < 300 and not token_ok:
            line = request.split(b"\r\n", 1)[0]
            assert line.split(b" ")[1].split(b"?")[0] == b"/health", line
    if which == "locked" and not token_ok:
        assert len(backend.actions) == before  # nothing done without the token
    # and the API still answers
    assert _exchange(api.port, b"GET /health HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200")
