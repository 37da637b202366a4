"""A scripted OpenAI-compatible chat server on loopback, for the tests.

It answers `POST /chat/completions` over real HTTP. Each request is attributed to an item (a
regex over the first user message) and follows that item's script, one action per attempt
(the last action repeats): "ok", "prose" (valid content wrapped in chatter and sloppy JSON),
"yaml", "http500", "http503", "http429" (Retry-After: 0), "http400", "timeout" (answers after
`delay_seconds`), "bad_body" (not JSON). Items without a script follow `default_actions`
(["ok"] unless given; e.g. ["http503"] is a server that is down). A final assistant message is
treated as a prefill: the answer continues it, like llama.cpp's server.

`response_formats` lists the `response_format` types the server takes (default: json_schema
and json_object); a request with another type gets HTTP 400 naming `response_format`, as
servers without structured output answer. Every request's format is kept in `formats`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ACTIONS = (
    "ok",
    "prose",
    "yaml",
    "http500",
    "http503",
    "http429",
    "http400",
    "timeout",
    "bad_body",
)


def default_responder(item: str, body: dict[str, Any]) -> str:
    """A valid summarizer answer naming the item."""
    return json.dumps({"title": f"Neutral report on {item}"})


class FakeChatServer:
    """Start with `with FakeChatServer(...) as server:`; `server.base_url` ends in `/v1`."""

    def __init__(
        self,
        script: dict[str, list[str]] | None = None,
        responder: Callable[[str, dict[str, Any]], str] = default_responder,
        item_pattern: str = r"title: (\S+)",
        delay_seconds: float = 1.5,
        default_actions: list[str] | None = None,
        response_formats: tuple[str, ...] = ("json_schema", "json_object"),
    ) -> None:
        default_actions = ["ok"] if default_actions is None else list(default_actions)
        for actions in [*(script or {}).values(), default_actions]:
            unknown = set(actions) - set(ACTIONS)
            if unknown or not actions:
                raise ValueError(f"FakeChatServer: bad script actions {actions}")
        self.script = dict(script or {})
        self.default_actions = default_actions
        self.responder = responder
        self.item_pattern = re.compile(item_pattern)
        self.delay_seconds = delay_seconds
        self.requests: Counter[str] = Counter()
        self.log: list[tuple[str, str, dict[str, str]]] = []  # (item, action, headers)
        self.roles: list[str] = []  # role of the last message of each request
        self.response_formats = tuple(response_formats)
        self.formats: list[str | None] = []  # response_format type of each request
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise ValueError("FakeChatServer is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def __enter__(self) -> FakeChatServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                try:
                    server._handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout); nothing to answer

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def _next_action(self, item: str, headers: dict[str, str]) -> str:
        with self._lock:
            attempt = self.requests[item]
            self.requests[item] += 1
            actions = self.script.get(item, self.default_actions)
            action = actions[min(attempt, len(actions) - 1)]
            self.log.append((item, action, headers))
        return action

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length", 0))
        body = json.loads(h.rfile.read(length) or b"{}")
        if not h.path.endswith("/chat/completions"):
            self._send(h, 404, "not found")
            return
        users = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
        match = self.item_pattern.search(users[0]) if users else None
        item = match.group(1) if match else "?"
        headers = dict(h.headers.items())
        fmt = (body.get("response_format") or {}).get("type")
        with self._lock:
            self.roles.append((body.get("messages") or [{}])[-1].get("role", ""))
            self.formats.append(fmt)
        if fmt is not None and fmt not in self.response_formats:
            message = f"response_format type {fmt!r} is not supported"
            self._send(h, 400, json.dumps({"error": {"message": message}}))
            return
        action = self._next_action(item, headers)
        auth = headers.get("Authorization", "")
        if action == "http500":
            self._send(h, 500, f"internal error (debug: auth={auth})")
        elif action == "http503":
            self._send(h, 503, f"service unavailable (debug: auth={auth})")
        elif action == "http429":
            self._send(h, 429, "slow down", {"Retry-After": "0"})
        elif action == "http400":
            self._send(h, 400, json.dumps({"error": f"bad request; you sent {auth}"}))
        elif action == "bad_body":
            self._send(h, 200, "<html>gateway says hi</html>")
        else:
            if action == "timeout":
                time.sleep(self.delay_seconds)
            content = self.responder(item, body)
            messages = body.get("messages") or [{}]
            prefill = (
                messages[-1].get("content", "") if messages[-1].get("role") == "assistant" else ""
            )
            if action == "ok" and prefill and content.startswith(prefill):
                content = content[len(prefill) :]
            if action == "prose":
                content = _sloppy(content)
            elif action == "yaml":
                content = "title: XYZ\nformat: yaml\n"
            payload = {
                "id": "fake",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
            }
            self._send(h, 200, json.dumps(payload), {"Content-Type": "application/json"})

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler, status: int, text: str, headers: dict[str, str] | None = None
    ) -> None:
        data = text.encode("utf-8")
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


def _sloppy(content: str) -> str:
    """Valid JSON turned into what chatty models write: prose, fences, single quotes, a
    trailing comma, bare keys."""
    value = json.loads(content)
    pairs = ", ".join(f"{k}: {_single(v)}" for k, v in value.items())
    return f"Sure! Here is the answer:\n```json\n{{{pairs},}}\n```\nHope this helps."


def _single(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(_single(v) for v in value) + "]"
    return json.dumps(value)
