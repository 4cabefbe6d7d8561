"""A Python client for the lineage gRPC service, mirroring `lineage.engine.Lineage`.

    with LineageClient("127.0.0.1:50051", token="...") as c:
        rec = c.register("t1", "path/to/teacher", "teacher")
        res = c.scan("path/to/suspect")          # a lineage.types.ScanResult
        print(res.to_json())                     # the same JSON as `lineage scan --json`

Methods return `lineage.types` values and raise `LineageError` subclasses: the server's
google.rpc.ErrorInfo reason names the class and its metadata the field, so remote errors read
like local ones. Errors without ErrorInfo (auth, transport, deadlines) raise `RemoteError`.
Conversion to and from protobuf lives in `server.convert`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import grpc
import numpy as np
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from lineage import errors as E
from lineage._proto.lineage.v1 import lineage_pb2 as pb
from lineage._proto.lineage.v1 import lineage_pb2_grpc as pb_grpc
from lineage.types import ModelRecord, ScanResult, SearchHit

__all__ = ["LineageClient", "RemoteError", "read_token"]

MiB = 1024 * 1024
_BY_REASON = {cls.reason: cls for cls in (getattr(E, n) for n in E.__all__)}
_BY_CODE = {grpc.StatusCode.INVALID_ARGUMENT: E.InvalidArgumentError,
            grpc.StatusCode.NOT_FOUND: E.UnknownModelError,
            grpc.StatusCode.ALREADY_EXISTS: E.AlreadyExistsError}


class RemoteError(E.LineageError):
    """A server or transport failure that is not a lineage error (auth, network, deadline)."""

    reason = "REMOTE"

    def __init__(self, message: str, *, code: grpc.StatusCode, field: str | None = None
                 ) -> None:
        super().__init__(message, field=field)
        self.code = code


def read_token(path: str | Path) -> str:
    """The first token of a token file (same format as the server's: `TOKEN [ROLE]`)."""
    for line in Path(path).expanduser().read_text().splitlines():
        parts = line.split("#", 1)[0].split()
        if parts:
            return parts[0]
    raise E.InvalidArgumentError(f"token file {path} holds no token", field="token_file")


def _error(err: grpc.RpcError) -> E.LineageError:
    code = err.code()  # type: ignore[attr-defined]
    message = err.details() or code.name  # type: ignore[attr-defined]
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    reason, field = None, None
    for d in status.details if status else ():
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            reason, field = info.reason, info.metadata.get("field") or None
    cls = _BY_REASON.get(reason or "") or _BY_CODE.get(code)
    if cls is None:
        return RemoteError(f"server: {code.name}: {message}", code=code, field=field)
    return cls(message, field=field)


class LineageClient:
    """A blocking client; one channel, reused by every call. Close it (or use `with`)."""

    def __init__(self, address: str, *, token: str | None = None,
                 root_certificates: bytes | None = None, private_key: bytes | None = None,
                 certificate_chain: bytes | None = None, tls: bool | None = None,
                 timeout: float | None = 3600.0, max_message_bytes: int = 16 * MiB) -> None:
        from server import convert  # the one module that owns to_pb / from_pb

        self._convert = convert
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes)]
        secure = tls if tls is not None else bool(root_certificates or certificate_chain)
        if secure:
            creds = grpc.ssl_channel_credentials(root_certificates, private_key,
                                                 certificate_chain)
            self._channel = grpc.secure_channel(address, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = pb_grpc.LineageServiceStub(self._channel)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LineageClient:
        """From the CLI's --server/--token-file/--tls-ca/--tls-cert/--tls-key flags."""
        def read(name: str) -> bytes | None:
            p = getattr(args, name, None)
            return Path(p).expanduser().read_bytes() if p else None

        token_file = getattr(args, "token_file", None)
        return cls(args.server, token=read_token(token_file) if token_file else None,
                   root_certificates=read("tls_ca"), private_key=read("tls_key"),
                   certificate_chain=read("tls_cert"),
                   tls=bool(getattr(args, "tls_ca", None) or getattr(args, "tls_cert", None)))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout,
                                               metadata=self._metadata)
        except grpc.RpcError as e:
            raise _error(e) from None

    # -- models ----------------------------------------------------------------------------

    def register(self, name: str, model: str, role: str, *, request_id: str | None = None
                 ) -> ModelRecord:
        req = pb.CreateModelRequest(
            model_id=name, request_id=request_id or "",
            model=pb.Model(uri=model, role=self._convert.role_to_pb(role)))
        if role and not req.model.role:
            raise E.InvalidArgumentError(f"role must be one of teacher, reference, got {role!r}",
                                         field="role")
        return self._convert.model_from_pb(self._call("CreateModel", req).model)

    def get_model(self, name: str) -> ModelRecord:
        req = pb.GetModelRequest(name=self._convert.model_name(name))
        return self._convert.model_from_pb(self._call("GetModel", req).model)

    def iter_models(self, *, role: str | None = None, page_size: int = 100
                    ) -> Iterator[ModelRecord]:
        """Every registered model, fetched one page at a time."""
        token = ""
        while True:
            resp = self._call("ListModels", pb.ListModelsRequest(
                page_size=page_size, page_token=token, role=self._convert.role_to_pb(role)))
            yield from (self._convert.model_from_pb(m) for m in resp.models)
            token = resp.next_page_token
            if not token:
                return

    def list_models(self, *, role: str | None = None, page_size: int = 100
                    ) -> list[ModelRecord]:
        return list(self.iter_models(role=role, page_size=page_size))

    def delete_model(self, name: str) -> None:
        self._call("DeleteModel", pb.DeleteModelRequest(name=self._convert.model_name(name)))

    # -- scans -----------------------------------------------------------------------------

    def scan(self, model: str, *, access: str = "full", max_queries: int | None = None,
             alpha: float = 0.01, teachers: Sequence[str] | None = None,
             request_id: str | None = None, early_stop: bool | None = None) -> ScanResult:
        req = pb.CreateScanRequest(
            suspect=model, access=self._access(access), alpha=alpha,
            teachers=[self._convert.model_name(t) for t in teachers or ()],
            disable_early_stop=early_stop is False, request_id=request_id or "")
        if max_queries is not None:
            req.max_queries = max_queries
        return self._convert.scan_from_pb(self._call("CreateScan", req).scan)

    def get_scan(self, scan_id: str) -> ScanResult:
        req = pb.GetScanRequest(name=self._convert.scan_name(scan_id))
        return self._convert.scan_from_pb(self._call("GetScan", req).scan)

    def iter_scans(self, *, page_size: int = 50) -> Iterator[ScanResult]:
        """Every stored scan, oldest first, fetched one page at a time."""
        token = ""
        while True:
            resp = self._call("ListScans", pb.ListScansRequest(page_size=page_size,
                                                               page_token=token))
            yield from (self._convert.scan_from_pb(s) for s in resp.scans)
            token = resp.next_page_token
            if not token:
                return

    def list_scans(self, *, page_size: int = 50) -> list[ScanResult]:
        return list(self.iter_scans(page_size=page_size))

    def compare(self, model: str, teacher: str, *, access: str = "full",
                max_queries: int | None = None, alpha: float = 0.01) -> ScanResult:
        req = pb.CompareRequest(suspect=model, teacher=self._convert.model_name(teacher),
                                access=self._access(access), alpha=alpha)
        if max_queries is not None:
            req.max_queries = max_queries
        return self._convert.scan_from_pb(self._call("Compare", req).scan)

    def search(self, *, vector: np.ndarray | None = None, model: str | None = None,
               access: str = "full", k: int = 10) -> list[SearchHit]:
        if (vector is None) == (model is None):
            raise E.InvalidArgumentError("give exactly one of vector or model", field="vector")
        req = pb.SearchSignaturesRequest(access=self._access(access), top_k=k)
        if vector is not None:
            # packed float32 (one buffer copy; a repeated float costs ~0.5 ms per 6,272 values)
            req.signature.CopyFrom(self._convert.signature_to_pb(vector))
        if model is not None:
            req.suspect = model
        return [self._convert.hit_from_pb(h)
                for h in self._call("SearchSignatures", req).hits]

    def _access(self, access: str) -> pb.AccessMode:
        try:
            return self._convert.access_to_pb(access)
        except KeyError:
            raise E.InvalidArgumentError(
                f"access must be full, logprobs or text, got {access!r}", field="access"
            ) from None
