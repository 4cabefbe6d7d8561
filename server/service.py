"""The `lineage.v1.LineageService` servicer: a thin async edge over one `Lineage` engine.

Each RPC converts its request (`server.convert`), runs the blocking engine call in the server's
thread pool (never on the event loop), and converts the result back. LineageErrors become rich
statuses through the single table in `server.errors`; creates with the same `request_id` that
arrive while the first is still running share its result instead of running twice.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from typing import Any, TypeAlias, TypeVar

import grpc
import numpy as np
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import empty_pb2
from grpc_status import rpc_status

from lineage._proto.lineage.v1 import lineage_pb2 as pb
from lineage._proto.lineage.v1 import lineage_pb2_grpc as pb_grpc
from lineage.backends import check_uri
from lineage.errors import InvalidArgumentError, LineageError
from server import convert, pagination
from server.errors import internal_status, to_rpc_status

__all__ = ["LineageServicer", "OperationsServicer"]

T = TypeVar("T")
MAX_REQUEST_ID = 128  # the store's column width
Ctx: TypeAlias = grpc.aio.ServicerContext

#: engine field names -> request field paths, per RPC (for BadRequest field violations)
_MODEL_FIELDS = {"name": "model_id", "role": "model.role", "model": "model.uri"}
_SCAN_FIELDS = {"model": "suspect", "teacher": "teachers", "scan_id": "name"}
_COMPARE_FIELDS = {"model": "suspect", "teachers": "teacher"}
_SEARCH_FIELDS = {"vector": "signature", "model": "suspect", "k": "top_k"}


class LineageServicer(pb_grpc.LineageServiceServicer):
    """One engine per server; `executor` runs its blocking calls."""

    def __init__(self, engine: Any, executor: Executor, model_concurrency: int = 1, *,
                 batch: Any = None, metrics: Any = None) -> None:
        self.engine = engine
        self.executor = executor
        self.batch = batch  # a server.batch.BatchService, or None: batch scans unavailable
        self.metrics = metrics  # a server.metrics.Metrics, or None
        # Loading Hugging Face models from several threads at once is not safe (transformers'
        # from_pretrained fails with "Cannot copy out of meta tensor"), so calls that may load
        # or run models take this gate; reads (get/list) do not.
        self._model_gate = asyncio.Semaphore(model_concurrency)
        self._inflight: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._searches = _SearchBatcher(self._run, engine)
        #: the signature dimension, when the engine has an index (a stand-in may not)
        dim = getattr(getattr(engine, "index", None), "dim", None)
        self._dim = dim if isinstance(dim, int) else None

    # -- plumbing --------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kw))

    async def _run_model(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        async with self._model_gate:
            return await self._run(fn, *args, **kw)

    async def _guard(self, ctx: Ctx, method: str, body: Callable[[], Awaitable[T]],
                     fields: Mapping[str, str] | None = None) -> T:
        try:
            return await body()
        except LineageError as e:
            status = to_rpc_status(e, fields)
        except Exception as e:  # noqa: BLE001 - the edge: never leak a traceback
            status = internal_status(e, method)
        await ctx.abort_with_status(rpc_status.to_status(status))
        raise AssertionError("abort_with_status returned")  # pragma: no cover

    async def _once(self, kind: str, request_id: str,
                    make: Callable[[], Awaitable[T]]) -> T:
        """Run `make` once per in-flight (kind, request_id); later arrivals await the same."""
        if not request_id:
            return await make()
        if len(request_id) > MAX_REQUEST_ID:
            raise InvalidArgumentError(f"request_id is longer than {MAX_REQUEST_ID}",
                                       field="request_id")
        key = (kind, request_id)
        fut = self._inflight.get(key)
        if fut is None:
            fut = asyncio.ensure_future(make())
            self._inflight[key] = fut
            fut.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(fut)  # a cancelled caller does not cancel the work

    # -- models ----------------------------------------------------------------------------

    async def CreateModel(self, request: pb.CreateModelRequest, context: Ctx
                          ) -> pb.CreateModelResponse:
        async def body() -> pb.CreateModelResponse:
            role = convert.role_from_pb(request.model.role, field="role")
            if role is None:
                raise InvalidArgumentError("model.role is required", field="role")
            if not request.model.uri:
                raise InvalidArgumentError("model.uri is required", field="model")
            check_uri(request.model.uri)
            rec = await self._once("model", request.request_id, lambda: self._run_model(
                self.engine.register, request.model_id, request.model.uri, role,
                request_id=request.request_id or None))
            return pb.CreateModelResponse(model=convert.model_to_pb(rec))
        return await self._guard(context, "CreateModel", body, _MODEL_FIELDS)

    async def GetModel(self, request: pb.GetModelRequest, context: Ctx) -> pb.GetModelResponse:
        async def body() -> pb.GetModelResponse:
            rec = await self._run(self.engine.get_model, convert.parse_name(request.name,
                                                                             "models"))
            return pb.GetModelResponse(model=convert.model_to_pb(rec))
        return await self._guard(context, "GetModel", body)

    async def ListModels(self, request: pb.ListModelsRequest, context: Ctx
                         ) -> pb.ListModelsResponse:
        async def body() -> pb.ListModelsResponse:
            size = pagination.page_size(request.page_size)
            role = convert.role_from_pb(request.role)
            after = pagination.decode(request.page_token, "models", role=role) or 0
            if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after < 2**63:
                raise InvalidArgumentError("page_token is invalid", field="page_token")
            recs = await self._run(self.engine.list_models, after_id=after, limit=size + 1,
                                   role=role)
            token = pagination.encode("models", recs[size - 1].id, role=role) \
                if len(recs) > size else ""
            return pb.ListModelsResponse(models=[convert.model_to_pb(r) for r in recs[:size]],
                                         next_page_token=token)
        return await self._guard(context, "ListModels", body)

    async def DeleteModel(self, request: pb.DeleteModelRequest, context: Ctx
                          ) -> pb.DeleteModelResponse:
        async def body() -> pb.DeleteModelResponse:
            await self._run_model(self.engine.delete_model, convert.parse_name(request.name,
                                                                          "models"))
            return pb.DeleteModelResponse()
        return await self._guard(context, "DeleteModel", body)

    # -- scans -----------------------------------------------------------------------------

    async def CreateScan(self, request: pb.CreateScanRequest, context: Ctx
                         ) -> pb.CreateScanResponse:
        async def body() -> pb.CreateScanResponse:
            if not request.suspect:
                raise InvalidArgumentError("suspect is required", field="model")
            check_uri(request.suspect)
            kw: dict[str, Any] = {
                "access": convert.access_from_pb(request.access),
                "max_queries": request.max_queries if request.HasField("max_queries") else None,
                "alpha": request.alpha if request.HasField("alpha") else 0.01,
                "teachers": [convert.parse_name(t, "models", field="teacher")
                             for t in request.teachers] or None,
                "request_id": request.request_id or None}
            if request.disable_early_stop:
                kw["early_stop"] = False
            res = await self._once("scan", request.request_id, lambda: self._run_model(
                self.engine.scan, request.suspect, **kw))
            if self.metrics is not None:
                self.metrics.scanned(res)
            return pb.CreateScanResponse(scan=convert.scan_to_pb(res))
        return await self._guard(context, "CreateScan", body, _SCAN_FIELDS)

    async def GetScan(self, request: pb.GetScanRequest, context: Ctx) -> pb.GetScanResponse:
        async def body() -> pb.GetScanResponse:
            res = await self._run(self.engine.get_scan, convert.parse_name(request.name,
                                                                            "scans"))
            return pb.GetScanResponse(scan=convert.scan_to_pb(res))
        return await self._guard(context, "GetScan", body, _SCAN_FIELDS)

    async def ListScans(self, request: pb.ListScansRequest, context: Ctx
                        ) -> pb.ListScansResponse:
        async def body() -> pb.ListScansResponse:
            size = pagination.page_size(request.page_size)
            after = pagination.decode(request.page_token, "scans")
            if after is not None and (not isinstance(after, str) or len(after) > 64):
                raise InvalidArgumentError("page_token is invalid", field="page_token")
            res = await self._run(self.engine.list_scans, after=after, limit=size + 1)
            token = pagination.encode("scans", res[size - 1].id) if len(res) > size else ""
            return pb.ListScansResponse(scans=[convert.scan_to_pb(s) for s in res[:size]],
                                        next_page_token=token)
        return await self._guard(context, "ListScans", body)

    async def Compare(self, request: pb.CompareRequest, context: Ctx) -> pb.CompareResponse:
        async def body() -> pb.CompareResponse:
            if not request.suspect:
                raise InvalidArgumentError("suspect is required", field="model")
            check_uri(request.suspect)
            teacher = convert.parse_name(request.teacher, "models", field="teacher")
            res = await self._run_model(
                self.engine.compare, request.suspect, teacher,
                access=convert.access_from_pb(request.access),
                max_queries=request.max_queries if request.HasField("max_queries") else None,
                alpha=request.alpha if request.HasField("alpha") else 0.01)
            if self.metrics is not None:
                self.metrics.scanned(res)
            return pb.CompareResponse(scan=convert.scan_to_pb(res))
        return await self._guard(context, "Compare", body, _COMPARE_FIELDS)

    async def SearchSignatures(self, request: pb.SearchSignaturesRequest, context: Ctx
                               ) -> pb.SearchSignaturesResponse:
        async def body() -> pb.SearchSignaturesResponse:
            which = request.WhichOneof("query")
            if which is None:
                raise InvalidArgumentError("give signature or suspect", field="vector")
            kw: dict[str, Any] = {"k": request.top_k or 10,
                                  "access": convert.access_from_pb(request.access)}
            if which == "signature":
                # checked here, on the loop (a few us), so that a bad vector never joins a
                # batch: a failed batch is retried one by one
                vector = convert.signature_from_pb(request.signature, self._dim)
                if not 1 <= kw["k"] <= 1000:
                    raise InvalidArgumentError("k must be in 1..1000", field="k")
                # an index lookup loads no model, so it skips the model gate; concurrent ones
                # share one engine call (see _SearchBatcher)
                hits = await self._searches.search(vector, kw["k"])
            else:
                kw["model"] = check_uri(request.suspect)
                hits = await self._run_model(self.engine.search, **kw)
            return convert.search_response(hits)
        return await self._guard(context, "SearchSignatures", body, _SEARCH_FIELDS)

    async def CreateBatchScan(self, request: pb.CreateBatchScanRequest, context: Ctx
                              ) -> operations_pb2.Operation:
        if self.batch is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                                "batch scans need a server with a home directory")
        batch = self.batch

        async def body() -> operations_pb2.Operation:
            if not request.request_id:
                raise InvalidArgumentError("request_id is required: a repeat must not start "
                                           "a second batch", field="request_id")
            if len(request.request_id) > MAX_REQUEST_ID:
                raise InvalidArgumentError(f"request_id is longer than {MAX_REQUEST_ID}",
                                           field="request_id")
            m = batch.manifest([convert.batch_suspect_from_pb(x) for x in request.suspects],
                               request.alpha if request.HasField("alpha") else None)
            job = await self._run(batch.create, m, request.request_id)
            items = await self._run(batch.jobs.items, job.id)
            return convert.job_to_operation(job, items)
        return await self._guard(context, "CreateBatchScan", body)


class _SearchBatcher:
    """Coalesces concurrent signature searches into one `engine.search_batch` call.

    Under load, calls arrive faster than one search takes. Each waiting call joins the next
    batch, so a batch of B queries costs one executor hop, one projection GEMM (instead of B
    matrix-vector products, each reading the whole projection) and one faiss call, and no
    call waits for more than the batch ahead of it. Alone, a call is a batch of one. If a
    batch fails, its calls are retried one by one, so one bad vector fails only its own call.
    """

    MAX_BATCH = 64

    def __init__(self, run: Callable[..., Awaitable[Any]], engine: Any) -> None:
        self._run = run
        self._engine = engine
        self._pending: list[tuple[np.ndarray, int, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def search(self, vector: np.ndarray, k: int) -> Any:
        if not hasattr(self._engine, "search_batch"):  # an engine without batching
            return await self._run(self._engine.search, vector=vector, k=k)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((vector, k, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self.MAX_BATCH]
            del self._pending[: self.MAX_BATCH]
            try:
                res = await self._run(self._engine.search_batch, [v for v, _, _ in batch],
                                      [k for _, k, _ in batch])
            except Exception:  # noqa: BLE001 - retried one by one: each call gets its own error
                for v, k, fut in batch:
                    try:
                        r = await self._run(self._engine.search_batch, [v], [k])
                    except Exception as e:  # noqa: BLE001 - delivered to its own caller
                        if not fut.done():
                            fut.set_exception(e)
                    else:
                        if not fut.done():
                            fut.set_result(r[0])
                continue
            for (_, _, fut), r in zip(batch, res):
                if not fut.done():  # a cancelled caller
                    fut.set_result(r)


class OperationsServicer(operations_pb2_grpc.OperationsServicer):
    """google.longrunning.Operations over batch jobs (AIP-151): one operation per job."""

    def __init__(self, batch: Any, executor: Executor) -> None:  # BatchService or None
        self.batch = batch
        self.executor = executor

    async def _run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kw))

    async def _op(self, job_id: str) -> operations_pb2.Operation:
        job = await self._run(self.batch.jobs.get, job_id)
        items = await self._run(self.batch.jobs.items, job_id)
        return convert.job_to_operation(job, items)

    async def _guard(self, ctx: Ctx, method: str, body: Callable[[], Awaitable[T]]) -> T:
        if self.batch is None:
            await ctx.abort(grpc.StatusCode.UNIMPLEMENTED,
                            "operations need a server with a home directory")
            raise AssertionError("abort returned")  # pragma: no cover
        try:
            return await body()
        except LineageError as e:
            status = to_rpc_status(e, {"job": "name"})
        except Exception as e:  # noqa: BLE001 - the edge
            status = internal_status(e, method)
        await ctx.abort_with_status(rpc_status.to_status(status))
        raise AssertionError("abort_with_status returned")  # pragma: no cover

    async def GetOperation(self, request: Any, context: Ctx) -> Any:
        async def body() -> Any:
            return await self._op(convert.parse_name(request.name, "operations"))
        return await self._guard(context, "GetOperation", body)

    async def ListOperations(self, request: Any, context: Ctx) -> Any:
        async def body() -> Any:
            if request.filter:
                raise InvalidArgumentError("filters are not supported", field="filter")
            size = pagination.page_size(request.page_size)
            after = pagination.decode(request.page_token, "operations")
            if after is not None and not isinstance(after, str):
                raise InvalidArgumentError("page_token is invalid", field="page_token")
            jobs = await self._run(self.batch.jobs.list_jobs, after=after,
                                   limit=size + 1)
            token = pagination.encode("operations", jobs[size - 1].id) \
                if len(jobs) > size else ""
            ops = [await self._op(j.id) for j in jobs[:size]]
            return operations_pb2.ListOperationsResponse(operations=ops,
                                                         next_page_token=token)
        return await self._guard(context, "ListOperations", body)

    async def CancelOperation(self, request: Any, context: Ctx) -> Any:
        async def body() -> Any:
            await self._run(self.batch.cancel,
                            convert.parse_name(request.name, "operations"))
            return empty_pb2.Empty()
        return await self._guard(context, "CancelOperation", body)

    async def DeleteOperation(self, request: Any, context: Ctx) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            "batch jobs and their scans are kept; nothing is deleted")

    async def WaitOperation(self, request: Any, context: Ctx) -> Any:
        async def body() -> Any:
            name = convert.parse_name(request.name, "operations")
            # seconds + nanos by hand: ToTimedelta() overflows on a hostile duration
            limit = float(request.timeout.seconds) + request.timeout.nanos / 1e9 \
                if request.HasField("timeout") else 60.0
            deadline = asyncio.get_running_loop().time() + min(max(limit, 0.0), 600.0)
            while True:
                op = await self._op(name)
                if op.done or asyncio.get_running_loop().time() >= deadline:
                    return op
                await asyncio.sleep(0.5)
        return await self._guard(context, "WaitOperation", body)
