"""A route whose JSON body pydantic-core parses and checks in one pass, from the bytes.

FastAPI reads a JSON body with `json.loads` and then checks the Python objects against the
route's body model: two passes, the first building dicts and lists that the second walks again.
For the ingest route (POST /api/ingest/runs/{id}/events, batches of hundreds of events) those
two passes were a third of the server's time per batch. `OnePassJsonRoute` hands FastAPI a
request whose `json()` is already the validated model (`TypeAdapter.validate_json` on the bytes);
FastAPI's own check of a model instance then passes it through. When the one pass refuses the
body, `json()` falls back to `json.loads`, so FastAPI checks it as it checks every other route:
the same 422s, naming the same fields, and the same OpenAPI document (the route still declares
its body model).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError


class _OnePassRequest(Request):
    """A request whose JSON is parsed and validated by `adapter` in one pass when it is valid."""

    adapter: TypeAdapter[Any]

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = self.adapter.validate_json(body)
            except ValidationError:  # FastAPI checks the plain JSON and says what is wrong
                self._json = json.loads(body)
        return self._json


class OnePassJsonRoute(APIRoute):
    """An APIRoute (a router's `route_class`) whose body model is validated from the bytes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler
        request_class = type("OnePassRequest", (_OnePassRequest,),
                             {"adapter": TypeAdapter(self.body_field.field_info.annotation)})

        async def one_pass(request: Request) -> Response:
            return await handler(request_class(request.scope, request.receive))

        return one_pass
