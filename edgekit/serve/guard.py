"""The server's door: API keys and the request body limit, as plain ASGI middleware (no per-request task).

* Once keys are set, every path but ``/health`` needs ``Authorization: Bearer KEY`` with
  one of them (compared in constant time); otherwise 401 in OpenAI's error shape, which
  never quotes what the client sent.
* A body larger than ``max_body_bytes`` is refused with 413: at once when Content-Length
  says so, else as soon as the bytes received pass the limit (chunked uploads), before
  the rest is read.
"""

from __future__ import annotations

import hmac
import json

OPEN_PATHS = frozenset({"/health"})


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a body passes the limit; the endpoint answers 413."""

    def __init__(self, limit: int):
        super().__init__(f"the request body is larger than {limit} bytes: send less (the server's max_body_bytes)")
        self.limit = limit


def error_body(message: str, code: str, type: str = "invalid_request_error") -> bytes:
    return json.dumps({"error": {"message": message, "type": type, "param": None, "code": code}}).encode()


async def send_json(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: ``Guard(app, api_keys=(...), max_body_bytes=N)``."""

    def __init__(self, app, api_keys: tuple[str, ...] = (), max_body_bytes: int = 1 << 20):
        self.app = app
        self.keys = [k.encode() for k in api_keys]
        self.max_body = max_body_bytes

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        value = next((v for k, v in headers if k == b"authorization"), b"")
        scheme, _, token = value.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return False
        token = token.strip()
        ok = False
        for key in self.keys:  # no early exit: the time does not tell which key came close
            ok |= hmac.compare_digest(token, key)
        return ok

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = scope.get("headers", [])
        if self.keys and scope.get("path") not in OPEN_PATHS and not self._authorized(headers):
            present = any(k == b"authorization" for k, _ in headers)
            message = ("Incorrect API key provided: send one of the server's keys as 'Authorization: Bearer KEY'" if present
                       else "No API key provided: send 'Authorization: Bearer KEY' with one of the server's keys")
            return await send_json(send, 401, error_body(message, "invalid_api_key"), [(b"www-authenticate", b"Bearer")])
        length = next((v for k, v in headers if k == b"content-length"), None)
        if length is not None:
            try:
                too_big = int(length) > self.max_body
            except ValueError:
                return await send_json(send, 400, error_body("the Content-Length header is not a number", "invalid_request"))
            if too_big:
                return await send_json(send, 413, error_body(str(BodyTooLarge(self.max_body)), "request_too_large"),
                                       [(b"connection", b"close")])
        seen = 0
        limit = self.max_body

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        return await self.app(scope, counted, send)


__all__ = ["Guard", "BodyTooLarge", "OPEN_PATHS", "error_body"]
