"""Prometheus metrics of the server: `lineage serve --metrics-port N` serves them on /metrics.

- `lineage_rpc_requests_total{method, code}` and `lineage_rpc_latency_seconds{method}`
  (a histogram), counted by `MetricsInterceptor` for every unary RPC, health checks included;
- `lineage_scans_total{access}` and `lineage_suspect_queries_total{access}`: scans served by
  CreateScan and Compare, and the queries they sent to suspects;
- `lineage_batch_jobs{state}` and `lineage_batch_items{state}`: batch progress, read from the
  store at scrape time (so it covers runners in other processes, too).

Each server has its own `CollectorRegistry`, so several servers in one process do not clash.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

__all__ = ["Metrics", "MetricsInterceptor"]


class _BatchCollector:
    def __init__(self, jobs: Any) -> None:
        self.jobs = jobs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        p = self.jobs.progress()
        j = GaugeMetricFamily("lineage_batch_jobs", "Batch jobs by state", labels=["state"])
        for state in ("pending", "running", "succeeded", "failed", "cancelled"):
            j.add_metric([state], p["jobs"].get(state, 0))
        i = GaugeMetricFamily("lineage_batch_items", "Batch suspects by state",
                              labels=["state"])
        for state in ("pending", "running", "done", "failed"):
            i.add_metric([state], p["items"].get(state, 0))
        yield j
        yield i


class Metrics:
    def __init__(self, jobs: Any | None = None) -> None:
        r = self.registry = CollectorRegistry()
        self.rpcs = Counter("lineage_rpc_requests", "RPCs handled", ["method", "code"],
                            registry=r)
        self.latency = Histogram("lineage_rpc_latency_seconds", "RPC latency", ["method"],
                                 registry=r, buckets=(.005, .01, .05, .1, .5, 1, 5, 10, 30, 60,
                                                      300, 1800))
        self.scans = Counter("lineage_scans", "Scans served", ["access"], registry=r)
        self.queries = Counter("lineage_suspect_queries", "Queries sent to suspects by scans",
                               ["access"], registry=r)
        if jobs is not None:
            r.register(_BatchCollector(jobs))  # type: ignore[arg-type]
        self._http: Any = None
        self.port = 0

    def scanned(self, res: Any) -> None:
        self.scans.labels(res.access).inc()
        self.queries.labels(res.access).inc(res.queries)

    def serve(self, port: int, address: str = "127.0.0.1") -> int:
        """Serve /metrics on address:port (0: any free port); returns the port."""
        server, _ = start_http_server(port, addr=address, registry=self.registry)
        self._http = server
        self.port = int(server.server_address[1])
        return self.port

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every unary-unary RPC (the only kind this server has)."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails],
                                     Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        inner = handler.unary_unary
        method = details.method.rsplit("/", 1)[-1]  # type: ignore[union-attr]

        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            t0 = time.perf_counter()
            try:
                return await inner(request, context)
            finally:
                code = context.code() if hasattr(context, "code") else None
                name = code.name if isinstance(code, grpc.StatusCode) else \
                    ("OK" if code in (None, 0) else str(code))
                self.m.rpcs.labels(method, name).inc()
                self.m.latency.labels(method).observe(time.perf_counter() - t0)

        return grpc.unary_unary_rpc_method_handler(
            timed, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
