"""``MAX_BODY_BYTES``: a request body larger than that is refused with a 413 problem.

At the ASGI level, so that a large body costs neither memory nor the event loop: a
``Content-Length`` over the limit is answered before any of the body is
read, and a body that comes without one (chunked) is counted as it streams
in and refused the moment it passes the limit; nothing past it is kept.

Starlette (1.6) and FastAPI have a ``max_body_size`` of their own now; this
limit stays because their 413 is plain text (or FastAPI's JSON), not the
service's problem document, and because the service supports versions
older than theirs.
"""

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Message, Receive, Scope

from .problems import problem_response


class BodyTooLargeError(HTTPException):
    """The body passed the limit while it was read; the handlers answer it as a 413 problem."""

    def __init__(self, limit: int) -> None:
        """Say what the limit is."""
        super().__init__(413, _detail(limit))


def _detail(limit: int) -> str:
    return f"The request body is larger than {limit} bytes."


class BodyLimit:
    """``MAX_BODY_BYTES`` on each request, for the middleware layer (`edge.EdgeMiddleware`)."""

    def __init__(self, max_bytes: int) -> None:
        """Refuse bodies larger than ``max_bytes``."""
        self.max_bytes = max_bytes

    def refusal(self, scope: Scope) -> Response | None:
        """The 413 problem for a request whose ``Content-Length`` is over the limit, else None."""
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            # Connection: close, as the rest of the body is never read.
            return problem_response(413, _detail(self.max_bytes), {"Connection": "close"})
        return None

    def counted(self, receive: Receive) -> Receive:
        """``receive``, which refuses the body the moment it passes the limit."""
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        return counted
