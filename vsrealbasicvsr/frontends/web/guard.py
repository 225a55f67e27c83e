"""The server's door: every request passes `Guard` before the app sees it."""

from __future__ import annotations

import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from starlette.responses import JSONResponse

# Host names of this machine: without a token, the server answers only to these (so that a page
# elsewhere cannot reach it through a DNS name that resolves to 127.0.0.1).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
TOKEN_COOKIE = "rbvsr_token"


class Guard:
    """Checks every request before the app sees it (ASGI middleware).

    With a token: it must come as ?token=, an X-Token header or the cookie that a page opened
    with ?token= gets. Without one (loopback only): the Host must name this machine. Requests
    that change something (not GET/HEAD) from a page of another origin are refused either way.
    """

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        host = headers.get("host", "")
        problem, status, from_query = None, 403, False
        if self.token is None:
            if urlsplit(f"//{host}").hostname not in LOOPBACK_NAMES:
                problem = (
                    f"this server answers only as 127.0.0.1 or localhost, not {host!r}; open "
                    "http://127.0.0.1:PORT/, or start it with --host and a --token"
                )
        else:
            cookie = SimpleCookie(headers.get("cookie", ""))
            given = [
                *query.get("token", []),
                headers.get("x-token", ""),
                cookie[TOKEN_COOKIE].value if TOKEN_COOKIE in cookie else "",
            ]
            from_query = any(self._right(value) for value in query.get("token", []))
            if not any(self._right(value) for value in given):
                problem, status = (
                    (
                        "this server needs its token; open the address that `vsrealbasicvsr serve` "
                        "printed (it ends in ?token=...)"
                    ),
                    401,
                )
        origin = headers.get("origin")
        if problem is None and scope["method"] not in ("GET", "HEAD") and origin and urlsplit(origin).netloc != host:
            problem = f"a page of {origin} may not change jobs here; use this server's own page"
        if problem is not None:
            return await JSONResponse({"error": problem}, status)(scope, receive, send)
        if not from_query:
            return await self.app(scope, receive, send)

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _right(self, value: str) -> bool:
        return bool(value) and secrets.compare_digest(value.encode(), self.token.encode())
