"""What the server takes in and how much of it an error gives back.

- `BodySizeLimit`: a request body over `settings.max_body_bytes` is answered 413, naming the limit,
  before any route runs: at once when Content-Length says so, and as soon as the running count
  passes the limit for a body sent without one (chunked). Starlette's own limit answers only when
  a route reads its body, so a route that ignores its body would act first and refuse after.
- `validation_detail`: a 422's `detail` list, always the same shape (type, loc, msg, input), where
  `input` is a short excerpt of what was sent, never the whole of it: a 64 MB body must not come
  back as a 67 MB answer, and a value nested 500 levels deep must not exhaust the recursion limit
  while it is being encoded. Every text it holds is valid UTF-8: a lone surrogate in the input is
  shown as its escape.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import HTTPException, status
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

EXCERPT_CHARS = 80  # at most this much of a refused value comes back in a 422
MESSAGE_CHARS = 500  # a message may quote the value too

_short = reprlib.Repr()  # containers shown two levels deep, four items each
_short.maxlevel, _short.maxdict, _short.maxlist, _short.maxstring, _short.maxlong = 2, 4, 4, 40, 40


def too_large(limit: int) -> str:
    return f"request body too large: at most {limit} bytes (MARGINSCOPE_MAX_BODY_BYTES)"


class BodySizeLimit:
    """ASGI middleware: 413 for a body over the app's `settings.max_body_bytes` (read per request,
    since the settings are the lifespan's)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = getattr(scope["app"].state, "settings", None) if "app" in scope else None
        if scope["type"] != "http" or settings is None:
            await self.app(scope, receive, send)
            return
        limit: int = settings.max_body_bytes
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            response = JSONResponse({"detail": too_large(limit)},
                                    status_code=status.HTTP_413_CONTENT_TOO_LARGE,
                                    headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # FastAPI passes an HTTPException raised here on as it is
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=too_large(limit))
            return message

        await self.app(scope, counted, send)


def excerpt(value: Any) -> Any:
    """A JSON-safe stand-in for a refused value: small scalars as they are, the rest cut short."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else _short.repr(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _cut(value, EXCERPT_CHARS)
    return _cut(_short.repr(value), EXCERPT_CHARS)  # depth-bounded: no recursion into deep nesting


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters of `text`, encodable as UTF-8: a lone surrogate a JSON body
    spelled ("\\ud800") comes back spelled as an escape, never as a 500 while encoding the 422."""
    text = text if len(text) <= limit else text[:limit] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def validation_detail(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """FastAPI's validation errors as a 422 `detail`, each input an excerpt, ctx as short text."""
    detail = []
    for err in errors:
        item: dict[str, Any] = {
            "type": str(err.get("type", "value_error")),
            "loc": [p if isinstance(p, int) else _cut(str(p), MESSAGE_CHARS) for p in err.get("loc", ())],
            "msg": _cut(str(err.get("msg", "")), MESSAGE_CHARS),
        }
        if "input" in err:
            item["input"] = excerpt(err["input"])
        if err.get("ctx"):
            item["ctx"] = {str(k): excerpt(v if isinstance(v, (int, float, bool)) else str(v))
                           for k, v in err["ctx"].items()}
        detail.append(item)
    return detail
