"""A real chat-completions server on 127.0.0.1 for the collection tests, serving scripted replies.

The reply depends on the `kind=<name>` written in the prompt's seed topic:
- well: a well-formed 4-turn dialogue, different for every prompt (deterministic);
- delay: the same after `delay_s` seconds;
- malformed: text without `[PersonA]` / `[PersonB]` markers;
- ratelimit: HTTP 429 (Retry-After: 0) on the first request of a prompt, then well;
- error500: HTTP 500 while `fail_500` is set (a test may clear it), then well;
- slow: the first request of a prompt sleeps `slow_s` (past the client's timeout), then well;
- short / question / long / few: a dialogue with a 3-word response, a question mark in a response, a 70-word
  response, or only 2 turns;
- dup: the same dialogue for every prompt.
Paths containing /unauthorized/ answer 401, /missing/ 404, /badrequest/ 400.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = ("river garden lantern market violin harbor meadow kitchen ladder window orchard station pebble candle "
         "notebook bicycle island compass blanket kettle village mirror forest pencil bridge meadow ribbon tower "
         "saddle feather valley thunder cottage whistle planet engine chapel marble basket pocket shadow").split()


def dialogue(seed: str, turns: int = 4, response_words: int = 12, question: bool = False) -> str:
    rng = random.Random(seed)
    lines = []
    for t in range(turns):
        lines.append(f"[PersonA]: What about the {rng.choice(WORDS)} near the {rng.choice(WORDS)}?")
        words = [rng.choice(WORDS) for _ in range(response_words)]
        ending = "?" if question and t == 1 else "."
        lines.append(f"[PersonB]: I keep the {' '.join(words)}{ending}")
    return "Here is the dialogue.\n" + "\n".join(lines) + "\n"


class ChatServer:
    """Start with `start()`; `url(prefix)` is a base URL for `InferenceClient(base_url=...)`."""

    def __init__(self, delay_s: float = 0.15, slow_s: float = 1.5):
        self.delay_s, self.slow_s, self.fail_500 = delay_s, slow_s, True
        self.requests: list[dict] = []
        self.seen: Counter = Counter()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                kind = (re.search(r"kind=(\w+)", prompt) or [None, "well"])[1]
                with server._lock:
                    server.seen[prompt] += 1
                    attempt = server.seen[prompt]
                    server.requests.append({"path": self.path, "authorization": self.headers.get("Authorization"),
                                            "body": body, "kind": kind, "prompt": prompt})
                status, content, headers = server.reply(self.path, kind, prompt, attempt)
                payload = json.dumps(content if status != 200 else {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body.get("model") or "test",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                try:
                    self.send_response(status)
                    for name, value in {"Content-Type": "application/json", "Content-Length": str(len(payload)), **headers}.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True

    def reply(self, path: str, kind: str, prompt: str, attempt: int) -> tuple[int, object, dict]:
        if "/unauthorized/" in path:
            return 401, {"error": "invalid api key"}, {}
        if "/missing/" in path:
            return 404, {"error": "model not found"}, {}
        if "/badrequest/" in path:
            return 400, {"error": "prompt too long"}, {}
        if kind == "ratelimit" and attempt == 1:
            return 429, {"error": "slow down"}, {"Retry-After": "0"}
        if kind == "error500" and self.fail_500:
            return 500, {"error": "boom"}, {}
        if kind == "slow" and attempt == 1:
            time.sleep(self.slow_s)
        if kind == "delay":
            time.sleep(self.delay_s)
        text = {
            "malformed": "I am sorry, I cannot write that conversation.",
            "short": dialogue(prompt, response_words=12).replace("[PersonB]: I keep the", "[PersonB]: Fine, thanks.\n#", 1),
            "question": dialogue(prompt, question=True),
            "long": dialogue(prompt, response_words=70),
            "few": dialogue(prompt, turns=2),
            "dup": dialogue("always the same"),
        }.get(kind) or dialogue(prompt)
        return 200, text, {}

    def start(self) -> "ChatServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, prefix: str = "") -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{prefix}/v1"

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if kind is None or r["kind"] == kind)
