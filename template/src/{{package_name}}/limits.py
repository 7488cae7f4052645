"""``MAX_BODY_BYTES``: a request body larger than that is refused with a 413 problem.

Pure ASGI, so that a large body costs neither memory nor the event loop: a
``Content-Length`` over the limit is answered before any of the body is
read, and a body that comes without one (chunked) is counted as it streams
in and refused the moment it passes the limit; nothing past it is kept.

Starlette (1.6) and FastAPI have a ``max_body_size`` of their own now; this
layer stays because their 413 is plain text (or FastAPI's JSON), not the
service's problem document, and because the service supports versions
older than theirs.
"""

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import problem_response


class BodyTooLargeError(HTTPException):
    """The body passed the limit while it was read; the handlers answer it as a 413 problem."""

    def __init__(self, limit: int) -> None:
        """Say what the limit is."""
        super().__init__(413, _detail(limit))


def _detail(limit: int) -> str:
    return f"The request body is larger than {limit} bytes."


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes``; other scopes pass straight through."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        """Wrap ``app``."""
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse at once on ``Content-Length``, else count the body as it is read."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = problem_response(
                413,
                _detail(self.max_bytes),
                {"Connection": "close"},  # the rest of the body is never read
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        await self.app(scope, counted, send)
