"""The grpc.aio server: wiring, health, reflection, TLS, limits and graceful shutdown.

    asyncio.run(serve(home))                        # until SIGTERM / SIGINT
    srv = LineageServer(engine, ServerConfig(address="127.0.0.1:0")); port = await srv.start()

One engine serves every call (its model cache makes concurrent scans of the same model load it
once); blocking engine work runs in a bounded thread pool. Shutdown marks health NOT_SERVING,
waits `drain_delay` so that balancers notice, stops accepting calls, and lets calls in flight
finish for up to `grace` seconds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.longrunning import operations_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from lineage._proto.lineage.v1 import lineage_pb2 as pb
from lineage._proto.lineage.v1 import lineage_pb2_grpc as pb_grpc
from lineage.errors import InvalidArgumentError
from lineage.audit import AuditLog
from lineage.tokens import TokenStore
from server.auth import CredentialSource, load_tokens
from server.guard import EdgeInterceptor
from server.service import LineageServicer, OperationsServicer

__all__ = ["SERVICE_NAME", "LineageServer", "ServerConfig", "run_server", "serve"]

log = logging.getLogger("lineage.server")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LineageService"].full_name
OPERATIONS_NAME = "google.longrunning.Operations"
MiB = 1024 * 1024

EngineSource = Any  # a Lineage, a zero-argument factory returning one, or a home directory


@dataclass(frozen=True)
class ServerConfig:
    """Server settings, built once at the edge (the CLI) and passed down."""

    address: str = "127.0.0.1:50051"
    token_file: str | None = None
    tls_cert: str | None = None  # PEM server certificate chain
    tls_key: str | None = None  # PEM private key
    client_ca: str | None = None  # PEM CA: when set, clients must present a certificate (mTLS)
    max_message_bytes: int = 16 * MiB  # both directions
    grace: float = 300.0  # seconds calls in flight may take to finish after SIGTERM
    drain_delay: float = 1.0  # seconds NOT_SERVING is announced before calls are refused
    workers: int = 4  # threads for blocking engine work
    #: engine calls that load or run models at once (register, scan, compare, search);
    #: 1 until the backends make model loading thread-safe
    model_concurrency: int = 1
    #: serve Prometheus /metrics on this port (0: any free port; None: no metrics)
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    #: the home's token table and audit log; by default `tokens.db` / `audit.db` in the
    #: engine's home (when it has one)
    tokens_db: str | None = None
    audit_log: str | None = None

    def validate(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InvalidArgumentError("--tls-cert and --tls-key go together", field="tls_key")
        if self.client_ca and not self.tls_cert:
            raise InvalidArgumentError("--client-ca needs --tls-cert and --tls-key",
                                       field="client_ca")
        if self.max_message_bytes < 1024 or min(self.workers, self.model_concurrency) < 1 \
                or self.grace < 0:
            raise InvalidArgumentError("need max_message_bytes >= 1024, workers >= 1, "
                                       "model_concurrency >= 1, grace >= 0",
                                       field="max_message_bytes")


def _engine(source: EngineSource) -> tuple[Any, bool]:
    """(engine, owned): a home directory gives an engine the server owns and closes."""
    if isinstance(source, (str, Path)):
        from lineage.engine import Lineage

        return Lineage(source), True
    if callable(source) and not hasattr(source, "scan"):
        return source(), True
    return source, False


def _read(path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as e:
        raise InvalidArgumentError(f"cannot read {path}: {e.strerror}", field="tls") from None


class LineageServer:
    """One server: start() binds and returns the port; stop() drains and shuts down."""

    def __init__(self, engine: EngineSource, config: ServerConfig | None = None, *,
                 batch_spawn: Callable[[Path, str], Any] | None = None) -> None:
        self.config = config or ServerConfig()
        self._batch_spawn = batch_spawn  # how runners start (tests may replace it)
        self.metrics: Any = None
        self.config.validate()
        self._source = engine
        self.engine: Any = None
        self._owned = False
        self.port = 0
        self.health = health_aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._stopping: asyncio.Task[None] | None = None

    async def start(self) -> int:
        cfg = self.config
        static = load_tokens(cfg.token_file) if cfg.token_file else []
        self.engine, self._owned = _engine(self._source)
        home = getattr(self.engine, "home", None)
        tokens_db = cfg.tokens_db or (str(Path(home) / "tokens.db") if home else None)
        audit_path = cfg.audit_log or (str(Path(home) / "audit.db") if home else None)
        source = CredentialSource(static, TokenStore(tokens_db) if tokens_db else None)
        self.audit = AuditLog(audit_path) if audit_path else None
        self._pool = ThreadPoolExecutor(cfg.workers, thread_name_prefix="lineage-engine")
        limits = [("grpc.max_send_message_length", cfg.max_message_bytes),
                  ("grpc.max_receive_message_length", cfg.max_message_bytes),
                  ("grpc.so_reuseport", 0)]  # a second server on a busy port must fail
        batch = self._batch_service()
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if cfg.metrics_port is not None:
            from server.metrics import Metrics, MetricsInterceptor

            self.metrics = Metrics(batch.jobs if batch else None)
            interceptors.append(MetricsInterceptor(self.metrics))
        interceptors.append(EdgeInterceptor(source, self.audit))
        server = grpc.aio.server(interceptors=interceptors, options=limits)
        pb_grpc.add_LineageServiceServicer_to_server(
            LineageServicer(self.engine, self._pool, cfg.model_concurrency, batch=batch,
                            metrics=self.metrics), server)
        operations_pb2_grpc.add_OperationsServicer_to_server(
            OperationsServicer(batch, self._pool), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = (SERVICE_NAME, OPERATIONS_NAME, health_pb2.DESCRIPTOR.services_by_name[
            "Health"].full_name, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
        try:
            if cfg.tls_cert:
                tls = grpc.ssl_server_credentials(
                    [(_read(cfg.tls_key or ""), _read(cfg.tls_cert))],
                    root_certificates=_read(cfg.client_ca) if cfg.client_ca else None,
                    require_client_auth=bool(cfg.client_ca))
                self.port = server.add_secure_port(cfg.address, tls)
            else:
                self.port = server.add_insecure_port(cfg.address)
        except RuntimeError:  # grpc raises when it cannot bind
            self.port = 0
        if not self.port:
            self._pool.shutdown(wait=False)
            raise InvalidArgumentError(f"cannot listen on {cfg.address}", field="address")
        if not source.enabled and not _loopback(cfg.address):
            log.warning("listening on %s without a token file: anyone who can reach it "
                        "may call it", cfg.address)
        if self.metrics is not None:
            try:
                self.metrics.serve(cfg.metrics_port or 0, cfg.metrics_address)
            except OSError as e:
                self._pool.shutdown(wait=False)
                raise InvalidArgumentError(f"cannot serve metrics on {cfg.metrics_address}:"
                                           f"{cfg.metrics_port}: {e.strerror}",
                                           field="metrics_port") from None
        await server.start()
        self._server = server
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return self.port

    def _batch_service(self) -> Any:
        """Batch scans need the engine's home and store; a stand-in engine gets none."""
        home, store = getattr(self.engine, "home", None), getattr(self.engine, "store", None)
        if home is None or store is None or not hasattr(store, "engine"):
            return None
        from lineage.batch import JobStore
        from server.batch import BatchService, spawn_runner

        return BatchService(Path(home), JobStore(store.engine),
                            spawn_runner if self._batch_spawn is None else self._batch_spawn)

    async def stop(self, grace: float | None = None) -> None:
        """Drain and stop; safe to call more than once (later calls wait for the first)."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(
                self.config.grace if grace is None else grace))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()  # every service -> NOT_SERVING
        if self.config.drain_delay > 0:
            await asyncio.sleep(self.config.drain_delay)
        if self._server is not None:
            await self._server.stop(grace)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self.metrics is not None:
            self.metrics.stop()
        if self._owned and hasattr(self.engine, "close"):
            self.engine.close()

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


def _loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


async def serve(engine: EngineSource, config: ServerConfig | None = None, *,
                on_started: Callable[[int], None] | None = None) -> int:
    """Run until SIGTERM or SIGINT, then drain; returns the exit status (0)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before announcing the port
        loop.add_signal_handler(sig, stop.set)
    srv = LineageServer(engine, config)
    port = await srv.start()
    # Everything allocated so far (modules, the engine, its index maps) lives as long as the
    # process: move it out of the collector's sight. Without this, each full collection
    # walks it all and stalls the event loop, and every call in flight with it (up to 72 ms,
    # every few seconds under the RPC benchmark's load: the tail of its latency).
    gc.collect()
    gc.freeze()
    host = srv.config.address.rsplit(":", 1)[0]
    print(f"lineage server listening on {host}:{port}", file=sys.stderr, flush=True)
    if srv.metrics is not None:
        print(f"lineage server: metrics on http://{srv.config.metrics_address}:"
              f"{srv.metrics.port}/metrics", file=sys.stderr, flush=True)
    if on_started:
        on_started(port)
    trimmer = asyncio.ensure_future(_trim_every(TRIM_SECONDS))
    await stop.wait()
    trimmer.cancel()
    print("lineage server: shutting down, draining calls in flight", file=sys.stderr,
          flush=True)
    await srv.stop()
    return 0


TRIM_SECONDS = 30.0


async def _trim_every(seconds: float) -> None:
    """Hand free heap pages back to the kernel now and then (see `server.memory`)."""
    from server import memory

    while True:
        await asyncio.sleep(seconds)
        memory.trim()


def run_server(home: str | Path, *, address: str = "127.0.0.1:50051",
               token_file: str | None = None, tls_cert: str | None = None,
               tls_key: str | None = None, client_ca: str | None = None,
               **settings: Any) -> int:
    """The blocking entry point `lineage serve` calls; returns the exit status."""
    from server import memory

    memory.limit_arenas()  # before any worker thread exists
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    cfg = ServerConfig(address=address, token_file=token_file, tls_cert=tls_cert,
                       tls_key=tls_key, client_ca=client_ca, **settings)
    return asyncio.run(serve(Path(home).expanduser(), cfg))
