"""LineageError -> gRPC status, in one table, with google.rpc rich error details.

Every error class in `lineage.errors` has exactly one row (a test checks this). Each status
carries a `google.rpc.ErrorInfo` (reason = the class's `reason`, domain `lineage`, and the
engine's field name in `metadata["field"]`), plus a `google.rpc.BadRequest` field violation
whenever the error names a field. Anything that is not a LineageError becomes INTERNAL with
a generic message; the traceback goes to the server log, never to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from lineage import errors as E

__all__ = ["DOMAIN", "STATUS", "internal_status", "status_for", "to_rpc_status"]

log = logging.getLogger("lineage.server")
DOMAIN = "lineage"

#: The table. Keys are exact classes; a subclass not listed falls back to its nearest base.
STATUS: dict[type[E.LineageError], grpc.StatusCode] = {
    E.LineageError: grpc.StatusCode.UNKNOWN,
    E.InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    E.SuiteMismatchError: grpc.StatusCode.INVALID_ARGUMENT,
    E.UnknownModelError: grpc.StatusCode.NOT_FOUND,
    E.AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    E.UnsafeModelFormatError: grpc.StatusCode.FAILED_PRECONDITION,
    E.ModelLoadError: grpc.StatusCode.FAILED_PRECONDITION,
    E.AccessModeError: grpc.StatusCode.FAILED_PRECONDITION,
    E.BudgetExceededError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    E.BackendError: grpc.StatusCode.UNAVAILABLE,  # the suspect's endpoint failed
    E.InsufficientReferencesError: grpc.StatusCode.FAILED_PRECONDITION,
    E.StoreError: grpc.StatusCode.UNAVAILABLE,
}


def status_for(err: E.LineageError) -> grpc.StatusCode:
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return grpc.StatusCode.UNKNOWN  # unreachable: LineageError itself is in the table


def _pack(msg: object) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)  # type: ignore[arg-type]
    return a


def to_rpc_status(err: E.LineageError, fields: Mapping[str, str] | None = None
                  ) -> status_pb2.Status:
    """The google.rpc.Status for `err`; `fields` maps engine field names to request paths."""
    code = status_for(err)
    meta = {"field": err.field} if err.field else {}
    details = [_pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN,
                                                  metadata=meta))]
    if err.field:
        path = (fields or {}).get(err.field, err.field)
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=path,
                                                        description=err.message)])))
    return status_pb2.Status(code=code.value[0], message=err.message, details=details)


def internal_status(exc: BaseException, method: str) -> status_pb2.Status:
    """INTERNAL for an unexpected exception; logged here with its traceback."""
    log.error("unexpected error in %s", method, exc_info=exc)
    return status_pb2.Status(
        code=code_pb2.INTERNAL, message="internal error; see the server log",
        details=[_pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=DOMAIN))])
