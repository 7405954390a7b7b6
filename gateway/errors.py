"""Errors the gateway itself raises, in OpenAI's shape: {"error": {message, type, param, code}}."""

from __future__ import annotations

import orjson
from aiohttp import web

TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "admin_token_required"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    408: ("invalid_request_error", "request_timeout"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limited"),
    431: ("invalid_request_error", "headers_too_large"),
    500: ("server_error", "internal_error"),
    502: ("upstream_error", "upstream_unreachable"),
    503: ("server_error", "unavailable"),
    504: ("upstream_error", "upstream_timeout"),
}


def error_response(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> web.Response:
    kind, default_code = TYPES.get(status, ("server_error", "error"))
    body = {
        "error": {"message": message, "type": kind, "param": param, "code": code or default_code}
    }
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={"X-Cache-Status": "ERROR"} if status >= 400 else None,
    )
