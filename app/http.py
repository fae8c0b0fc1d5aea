"""The request/response records every page handles, and the one error type pages raise.

Kept free of any server code so a page can be unit-tested by calling `page.handle(Request(...))`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Request:
    """One HTTP request. `path` is percent-decoded and has no query; `query` keeps the last value
    of each name; header names are lower-case; `body` is at most the server's body limit."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        """The body parsed as JSON; HttpError(400) when it is not (nesting too deep included)."""
        try:
            return json.loads(self.body.decode("utf-8") or "null")
        except (UnicodeDecodeError, ValueError) as e:
            raise HttpError(400, f"request body is not JSON: {e}") from None
        except RecursionError:
            raise HttpError(400, "request body is not JSON this server reads: nested too deep") from None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> "Response":
        return cls(status, json.dumps(obj).encode("utf-8"), "application/json")

    @classmethod
    def png(cls, data: bytes) -> "Response":
        return cls(200, data, "image/png", {"Cache-Control": "no-store"})

    @classmethod
    def html(cls, text: str) -> "Response":
        return cls(200, text.encode("utf-8"), "text/html; charset=utf-8")

    @classmethod
    def error(cls, status: int, message: str) -> "Response":
        return cls.json({"error": message}, status)


class HttpError(Exception):
    """Raised by a page for a bad request: the server answers `status` with {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Page(Protocol):
    prefix: str

    def handle(self, req: Request) -> Response | None:
        """The response for a URL under `prefix` or "/api" + `prefix`; None when not this page's."""
