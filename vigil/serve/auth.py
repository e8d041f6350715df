"""The API token: where it comes from and how a request proves it holds it.

Reads are open; every mutating call must send ``Authorization: Bearer <token>``. The token comes
from the ``VIGIL_API_TOKEN`` environment variable or a token file; when neither is given a random
one is made at start and shown once to whoever started the server.
"""

import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vigil.errors import ConfigError

ENV_VAR = "VIGIL_API_TOKEN"
UNAUTHORIZED = "this call changes state: send the API token as 'Authorization: Bearer <token>'"
MIN_LENGTH = 16


def resolve_token(token_file: Path | None = None, env: dict[str, str] | None = None) -> tuple[str, str]:
    """The token and where it came from: the file if given, else the environment, else a fresh random one.

    >>> resolve_token(env={"VIGIL_API_TOKEN": "0123456789abcdef"})
    ('0123456789abcdef', 'environment variable VIGIL_API_TOKEN')
    >>> len(resolve_token(env={})[0]) >= 32
    True
    """
    env = os.environ if env is None else env
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ConfigError(f"cannot read the token file: {err.strerror}", source=str(token_file)) from None
        return _checked(token, str(token_file)), f"file {token_file}"
    if env.get(ENV_VAR):
        return _checked(env[ENV_VAR].strip(), ENV_VAR), f"environment variable {ENV_VAR}"
    return secrets.token_urlsafe(24), "generated"


def _checked(token: str, where: str) -> str:
    if len(token) < MIN_LENGTH:
        raise ConfigError(f"the API token must be at least {MIN_LENGTH} characters", source=where)
    return token


MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def holds_token(authorization: str | None, expected: bytes) -> bool:
    """Whether an ``Authorization`` header carries the token, compared in constant time.

    >>> holds_token("Bearer s3cret-s3cret-s3cret", b"s3cret-s3cret-s3cret"), holds_token(None, b"x")
    (True, False)
    """
    scheme, _, given = (authorization or "").partition(" ")
    ok = hmac.compare_digest(given.strip().encode("utf-8"), expected)
    return ok and scheme.lower() == "bearer"


def token_middleware(token: str) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """HTTP middleware refusing every mutating request without the token, before routing or body parsing,
    so an unauthenticated caller learns nothing about the call (not even whether its body was valid)."""
    expected = token.encode("utf-8")

    async def check(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.method in MUTATING and not holds_token(request.headers.get("authorization"), expected):
            return JSONResponse({"detail": UNAUTHORIZED}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    return check


def token_guard(token: str) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency: 401 unless the request carries ``token`` (compared in constant time).

    Declared through :class:`HTTPBearer`, so ``/openapi.json`` shows which calls need the token
    (the middleware above already refused them; this keeps each route safe on its own too).
    """
    if not token:
        raise ConfigError("an API token is required", key="token")
    expected = token.encode("utf-8")
    bearer = HTTPBearer(auto_error=False, description="The API token given to `vigil serve`.")

    async def require_token(cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        given = cred.credentials.encode("utf-8") if cred else b""
        if not hmac.compare_digest(given, expected):
            raise HTTPException(status_code=401, detail=UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})

    return require_token
