"""The edge guard: one interceptor in front of every call, doing three things in order.

1. **Undecodable requests** become INVALID_ARGUMENT. grpc deserialises a request before any
   handler runs and reports a parse failure as UNKNOWN ("Unexpected DecodeError"); a fuzzer
   found this. Every handler's deserialiser is wrapped so that bad bytes become a `Malformed`
   marker, which the wrapped handler refuses cleanly.
2. **Authentication and roles** (`server.auth`): UNAUTHENTICATED without a known bearer token,
   PERMISSION_DENIED when the token's role is below the method's. Health checks are public.
3. **Audit**: every mutating call (`AUDITED`) appends one entry to the hash-chained audit log
   (`lineage.audit`) when it starts (`STARTED`) and one when it ends, with the caller, the
   target, the request's fields and the status it ended with; refusals get only the second.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from lineage.audit import AuditLog
from server.auth import PUBLIC_METHODS, Credential, CredentialSource, allowed, bearer, check
from server.auth import OPS_PREFIX as _OPS
from server.auth import SVC_PREFIX as _SVC
from server.auth import needed_role

__all__ = ["AUDITED", "EdgeInterceptor", "Malformed"]

log = logging.getLogger("lineage.server")
#: mutating methods -> audit action
AUDITED = {
    _SVC + "CreateModel": "model.register",
    _SVC + "DeleteModel": "model.delete",
    _SVC + "CreateScan": "scan.create",
    _SVC + "Compare": "scan.compare",
    _SVC + "CreateBatchScan": "batch.create",
    _OPS + "CancelOperation": "operation.cancel",
    _OPS + "DeleteOperation": "operation.delete",
}
_TARGET_FIELDS = ("model_id", "name", "suspect")
_SKIP_FIELDS = {"signature"}  # large float vectors: not useful in an audit line


class Malformed:
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, why: str) -> None:
        self.why = why[:200]


def _safe(deser: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deser is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deser(data)
        except Exception as e:  # noqa: BLE001 - DecodeError, or anything a parser raises
            return Malformed(f"{type(e).__name__}: {e}")
    return parse


def _clip(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: ("<omitted>" if k in _SKIP_FIELDS else _clip(x)) for k, x in v.items()}
    if isinstance(v, list):
        return [_clip(x) for x in v[:20]]
    if isinstance(v, str):
        return v[:200]
    return v


def _summary(msg: Any) -> dict[str, Any]:
    """The set fields of a protobuf message as JSON, clipped (strings 200 chars, lists 20)."""
    from google.protobuf.json_format import MessageToDict

    try:
        return _clip(MessageToDict(msg, preserving_proto_field_name=True))  # type: ignore
    except Exception:  # noqa: BLE001 - never fail a call over its audit summary
        return {"<unrenderable>": type(msg).__name__}


def _code_name(context: Any, exc: BaseException | None) -> str:
    code = None
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 - older grpc
        code = None
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))
    if exc is None:
        return "OK"
    return "CANCELLED" if isinstance(exc, asyncio.CancelledError) else "UNKNOWN"


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    """See the module docstring. `source` None: no authentication; `audit` None: no audit."""

    def __init__(self, source: CredentialSource | None, audit: AuditLog | None) -> None:
        self.source = source if source is not None and source.enabled else None
        self.audit = audit

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails],
                                     Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        cred: Credential | None = None
        refusal: tuple[grpc.StatusCode, str] | None = None
        if self.source is not None and method not in PUBLIC_METHODS:
            token = bearer(details.invocation_metadata)  # type: ignore[attr-defined]
            cred = check(self.source.current(), token)
            if cred is None:
                refusal = (grpc.StatusCode.UNAUTHENTICATED,
                           "missing bearer token" if token is None else "invalid bearer token")
            elif not allowed(cred, method):
                refusal = (grpc.StatusCode.PERMISSION_DENIED,
                           f"{method.rsplit('/', 1)[-1]} needs role {needed_role(method)!r}; "
                           f"this token has {cred.role!r}")
        actor = cred.name if cred is not None else (
            "anonymous" if self.source is None else "unauthenticated")
        action = AUDITED.get(method) if self.audit is not None else None
        return _wrap(handler, refusal, action, actor, self.audit)


def _wrap(handler: grpc.RpcMethodHandler, refusal: tuple[grpc.StatusCode, str] | None,
          action: str | None, actor: str, audit: AuditLog | None) -> grpc.RpcMethodHandler:
    req_stream, resp_stream = handler.request_streaming, handler.response_streaming
    inner = {(False, False): handler.unary_unary, (False, True): handler.unary_stream,
             (True, False): handler.stream_unary, (True, True): handler.stream_stream
             }[(req_stream, resp_stream)]

    async def gate(request: Any, context: Any) -> Any:
        """Refuse, or return the request (a checked iterator for client streams)."""
        if refusal is not None:
            await context.abort(*refusal)
        if req_stream:
            async def checked() -> Any:
                async for r in request:
                    if isinstance(r, Malformed):
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                            f"malformed request message ({r.why})")
                    yield r
            return checked()
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"malformed request message ({request.why})")
        return request

    if not resp_stream:
        async def unary(request: Any, context: Any) -> Any:
            t0 = time.monotonic()
            exc: BaseException | None = None
            audited = action is not None and audit is not None
            if audited and refusal is not None:  # recorded before the caller hears of it
                await _record(audit, actor, action, request, None, None, t0,  # type: ignore
                              refusal[0].name)
                await context.abort(*refusal)
            try:
                req = await gate(request, context)
                if audited:
                    await _record(audit, actor, action, request, None, None, t0,  # type: ignore
                                  "STARTED")
                return await inner(req, context)
            except BaseException as e:
                exc = e
                raise
            finally:
                # an aborted call's status reaches the caller before this entry is written
                if audited:
                    await _record(audit, actor, action, request, context, exc, t0)  # type: ignore
        behavior: Any = unary
    else:
        async def streaming(request: Any, context: Any) -> Any:
            req = await gate(request, context)
            res = inner(req, context)
            if inspect.isasyncgen(res):
                async for item in res:
                    yield item
            else:
                await res
        behavior = streaming

    make = {(False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler}[(req_stream, resp_stream)]
    return make(behavior, request_deserializer=_safe(handler.request_deserializer),
                response_serializer=handler.response_serializer)


async def _record(audit: AuditLog, actor: str, action: str, request: Any, context: Any,
                  exc: BaseException | None, t0: float, outcome: str | None = None) -> None:
    fields = {"<malformed>": request.why} if isinstance(request, Malformed) \
        else _summary(request)
    target = next((str(fields[f]) for f in _TARGET_FIELDS if fields.get(f)), "")
    detail = {"request": fields, "seconds": round(time.monotonic() - t0, 3)}
    outcome = outcome or _code_name(context, exc)
    if exc is not None and outcome == "OK":
        outcome = "UNKNOWN"
    loop = asyncio.get_running_loop()
    # fsync'd SQLite write: off the event loop; shielded so a cancelled call is still recorded.
    # A failed append is logged, not raised: the call has already happened and its caller
    # should see its real status.
    try:
        await asyncio.shield(loop.run_in_executor(None, lambda: audit.append(
            actor=actor, action=action, target=target, outcome=outcome, detail=detail)))
    except Exception:  # noqa: BLE001
        log.exception("audit append failed for %s by %s on %r", action, actor, target)
