"""Errors as ``application/problem+json`` (RFC 9457)."""

from collections.abc import Mapping
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"


class ProblemError(Exception):
    """An error the service answers with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Describe the problem; ``headers`` go on the response."""
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def problem_response(
    status: int,
    detail: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Build the problem document for ``status``."""
    body: dict[str, object] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    return JSONResponse(
        body,
        status_code=status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Answer the service's own errors, and unknown routes, as problems."""

    @app.exception_handler(ProblemError)
    async def on_problem(_: Request, error: ProblemError) -> JSONResponse:
        return problem_response(error.status, error.detail, error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_exception(
        _: Request,
        error: StarletteHTTPException,
    ) -> JSONResponse:
        return problem_response(error.status_code, str(error.detail), error.headers)
