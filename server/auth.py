"""Bearer-token authentication: the token file and the server interceptor.

The token file holds one credential per line: `TOKEN` or `TOKEN ROLE` (roles are parsed and kept
for a later issue; a plain line has no role). Blank lines and `#` comments are ignored. Tokens
are kept only as SHA-256 digests and compared with `hmac.compare_digest` against every entry,
so neither the match position nor the token length shows in the timing.

Health checks need no token, so that load balancers and orchestrators can probe the server.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from lineage.errors import InvalidArgumentError

__all__ = ["PUBLIC_METHODS", "Credential", "TokenAuthInterceptor", "load_tokens"]

PUBLIC_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


@dataclass(frozen=True)
class Credential:
    digest: bytes  # sha256 of the token
    role: str | None  # None for a plain line


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def load_tokens(path: str | Path) -> list[Credential]:
    """Parse a token file; refuses a file without any token (it would lock everyone out)."""
    p = Path(path).expanduser()
    try:
        lines = p.read_text().splitlines()
    except OSError as e:
        raise InvalidArgumentError(f"cannot read token file {p}: {e.strerror}",
                                   field="token_file") from None
    creds = []
    for line in lines:
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if len(parts) > 2:
            raise InvalidArgumentError(f"token file {p}: a line is 'TOKEN [ROLE]'",
                                       field="token_file")
        creds.append(Credential(_digest(parts[0]), parts[1] if len(parts) == 2 else None))
    if not creds:
        raise InvalidArgumentError(f"token file {p} holds no token", field="token_file")
    return creds


def bearer(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The token of an `authorization: Bearer TOKEN` header, if any."""
    for k, v in metadata or ():
        if k.lower() == "authorization":
            v = v.decode() if isinstance(v, bytes) else str(v)
            scheme, _, token = v.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def check(creds: Sequence[Credential], token: str | None) -> Credential | None:
    """The matching credential, comparing against all entries in constant time."""
    if token is None:
        return None
    d = _digest(token)
    found = None
    for c in creds:
        if hmac.compare_digest(c.digest, d):
            found = c
    return found


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call but PUBLIC_METHODS without a valid bearer token (UNAUTHENTICATED)."""

    def __init__(self, creds: Sequence[Credential]) -> None:
        self.creds = list(creds)

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails],
                                     Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method in PUBLIC_METHODS:
            return handler
        token = bearer(details.invocation_metadata)  # type: ignore[attr-defined]
        if check(self.creds, token) is not None:
            return handler
        msg = "missing bearer token" if token is None else "invalid bearer token"
        return _deny(handler, msg)


def _deny(handler: grpc.RpcMethodHandler, msg: str) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as `handler` that only aborts."""
    async def abort(_: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, msg)

    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(abort, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
