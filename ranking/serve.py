"""The ads server: FastAPI app answering ranking requests with online features from Redis.

    python -m ranking.serve --ranker runs/ranker/models/with_embeddings --checkpoint runs/pipeline/stage2 \
        [--feature-repo feature_repo] [--catalog runs/pipeline/ingest] [--host 127.0.0.1] [--port 8000]
    uvicorn --factory ranking.serve:create_app --workers 4     # settings from DASHCLIP_SERVE_* (ranking.cli)

On start-up it logs one line: the address, the model version, the ranker and the store.

- `POST /rank` {consumer_id, query, query_id?, candidate_ids?, k=10}: ranked ads with pCTR, pCVR
  and score (pCTR × pCVR). Without candidate_ids the faiss index over the model version's
  product embeddings retrieves `--retrieve-k` candidates. Unknown products / consumer / query
  are scored with missing features and flagged (`unknown`, per-ad `known`).
- `GET /health`: 200 when Redis answers and holds the model version's materialization markers,
  else 503 with the reason; answers at once while the circuit breaker is open.
- `GET /metrics`: Prometheus text: request counts by route and status (500s included), latency
  histogram, unknown entities, Redis errors, circuit state, corrupt stored values.
- Malformed requests (bad types, NaN, text that is not UTF-8): 422 naming the field; bodies over
  `--max-body-bytes`: 413, decided while the body streams in (chunked or not).
- Redis down or stalled: 503 with the reason within `--lookup-timeout-ms` (all Redis reads of a
  request share that deadline; no retry outlives it); after `--breaker-failures` consecutive
  failures the circuit opens and requests get 503 at once until a probe every `--breaker-reset-s`
  finds Redis back. Redis back but empty (no marker for the model version): 503 "store empty for
  version X" until materialization refills it. One corrupt stored value: that candidate is scored
  as unknown, the others are served.
"""

from __future__ import annotations

if __name__ == "__main__":  # the command line lives in ranking.cli: parsed (and --help answered) before FastAPI loads
    from ranking.cli import serve_main

    raise SystemExit(serve_main())

import logging
import math
import time
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from anyio import CapacityLimiter
from anyio.to_thread import run_sync
from starlette.concurrency import run_in_threadpool

from dashclip import columns as DC
from features import columns as FC
from features.store import OnlineStoreUnavailable
from ranking.cli import LOOKUP_TIMEOUT_MS, MAX_BODY_BYTES, RANK_THREADS  # the defaults the command line shows
from ranking.online import RankService

log = logging.getLogger(__name__)

MAX_CANDIDATES = 1000


def _utf8(text: str) -> str:
    """JSON may carry lone surrogates (`\\ud800`); they cannot become Redis keys or response text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"not UTF-8 text: lone surrogate at position {e.start}") from None
    return text


def _utf8_all(ids: list[str]) -> list[str]:
    """`_utf8` for a list in one encode (a request's 100 candidate ids), naming the first bad one."""
    try:
        "".join(ids).encode("utf-8")
    except UnicodeEncodeError:
        for i, text in enumerate(ids):
            try:
                _utf8(text)
            except ValueError as e:
                raise ValueError(f"item {i}: {e}") from None
    return ids


RawId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Id = Annotated[RawId, AfterValidator(_utf8)]


class RankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    consumer_id: Id
    query: Annotated[str, StringConstraints(min_length=1, max_length=512), AfterValidator(_utf8)]
    query_id: Id | None = None
    candidate_ids: Annotated[list[RawId], AfterValidator(_utf8_all)] | None = Field(None, max_length=MAX_CANDIDATES)
    k: int = Field(10, ge=1, le=MAX_CANDIDATES)


class Ad(BaseModel):
    product_id: str
    rank: int
    score: float
    pctr: float
    pcvr: float
    known: bool


class RankResponse(BaseModel):
    ads: list[Ad]
    model_version: str
    retrieval: str  # request | faiss
    unknown: dict[str, list[str]]  # entity -> ids scored with default (missing) features
    query_source: str  # store | cache | encoded | missing
    latency_ms: float


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("ads_requests_total", "requests by route and status", ["route", "status"], registry=self.registry)
        self.latency = Histogram("ads_request_latency_seconds", "request latency by route", ["route"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
        self.unknown = Counter("ads_unknown_entities_total", "entities scored with defaults", ["entity"], registry=self.registry)
        self.redis_errors = Counter("ads_redis_unavailable_total", "requests refused because Redis was down", registry=self.registry)
        self.circuit_open = Gauge("ads_redis_circuit_open", "1 while the Redis circuit breaker refuses calls", registry=self.registry)
        self.corrupt = Gauge("ads_corrupt_values", "stored values that did not decode, by entity (since start)", ["entity"],
                             registry=self.registry)


class BodyLimit:
    """ASGI middleware: a POST body over `max_bytes` gets 413 as soon as the bytes read so far pass
    the cap (a declared Content-Length at once), so a huge or endless chunked body is never read
    in full. Bodies under the cap are buffered and handed on unchanged."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        size = dict(scope["headers"]).get(b"content-length")
        if size is not None and (not size.isdigit() or int(size) > self.max_bytes):
            return await self._refuse(scope, receive, send)
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            if total > self.max_bytes:
                return await self._refuse(scope, receive, send)
            if not message.get("more_body", False):
                break
        pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay():
            return pending.pop() if pending else await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        await JSONResponse(status_code=413, content={"detail": f"request body over {self.max_bytes} bytes"})(scope, receive, send)


class CountAndTime:
    """ASGI middleware: each request's latency and status counted by route; an unexpected error
    is logged and answered 500 (and counted), not lost. Plain ASGI: no per-request task and
    stream as in Starlette's BaseHTTPMiddleware."""

    ROUTES = ("/rank", "/health", "/metrics")

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t = time.perf_counter()
        route = scope["path"] if scope["path"] in self.ROUTES else "other"
        status = []

        async def send_status(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:  # noqa: BLE001 (an unexpected error: answered and counted, not lost)
            log.exception("%s %s failed", scope["method"], route)
            if status:  # the answer had begun: nothing more can be sent
                raise
            status.append(500)
            await JSONResponse(status_code=500, content={"detail": "internal server error"})(scope, receive, send)
        self.metrics.latency.labels(route).observe(time.perf_counter() - t)
        self.metrics.requests.labels(route, str(status[0] if status else 500)).inc()


def _printable(x):
    """Validation details echo the input; NaN and lone surrogates must not break the JSON answer."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, str):
        return x.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(x, dict):
        return {_printable(k): _printable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_printable(v) for v in x]
    return x


def _install_fault_handling(app: FastAPI, service: RankService, metrics: Metrics, max_body_bytes: int) -> None:
    """Body cap, 500s counted, 422 for any malformed body, 503 for a sick store (with the reason)."""
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(CountAndTime, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content={"detail": _printable(jsonable_encoder(exc.errors()))})

    @app.exception_handler(OnlineStoreUnavailable)
    async def redis_down(request: Request, exc: OnlineStoreUnavailable):
        metrics.redis_errors.inc()
        return JSONResponse(status_code=503, content={"detail": exc.detail, "reason": str(exc)})

    @app.get("/health")
    async def health():
        try:
            service.lookup.breaker.check()  # open circuit: answer now, not after a thread frees up
            await run_in_threadpool(service.ping)
        except OnlineStoreUnavailable as e:
            return JSONResponse(status_code=503, content={"status": "unavailable", "detail": e.detail, "reason": str(e),
                                                          "circuit": service.lookup.breaker.state})
        return {"status": "ok", "model_version": service.model_version, "ranker": service.ranker.config.name,
                "features": service.ranker.features, "circuit": service.lookup.breaker.state}


def create_app(service: RankService | None = None, max_body_bytes: int = MAX_BODY_BYTES,
               rank_threads: int = RANK_THREADS) -> FastAPI:
    """The app over ``service``; with none (``uvicorn --factory ranking.serve:create_app``, a
    gunicorn worker) the service is built from the ``DASHCLIP_SERVE_*`` settings (``ranking.cli``).
    At most ``rank_threads`` /rank requests are scored at once; the others wait in line."""
    if service is None:
        service, max_body_bytes, rank_threads = service_from_settings()
    if rank_threads < 1:
        raise ValueError(f"rank_threads: {rank_threads}, expected at least 1")
    limiter = CapacityLimiter(rank_threads)
    app = FastAPI(title="DashCLIP ads ranker")
    metrics = Metrics()
    app.state.service, app.state.metrics, app.state.rank_limiter = service, metrics, limiter
    _install_fault_handling(app, service, metrics, max_body_bytes)

    @app.post("/rank", response_model=RankResponse)
    async def rank(req: RankRequest) -> Response:
        return await run_sync(score, req, limiter=limiter)

    def score(req: RankRequest) -> Response:
        t = time.perf_counter()
        r = service.rank(req.consumer_id, req.query, req.candidate_ids, req.k, query_id=req.query_id)
        for entity, ids in r.missing.items():
            if ids:
                metrics.unknown.labels(entity).inc(len(ids))
        ads = [Ad(product_id=p, rank=i + 1, score=float(s), pctr=float(c), pcvr=float(v), known=bool(f))
               for i, (p, s, c, v, f) in enumerate(zip(r.product_ids, r.score, r.pctr, r.pcvr, r.product_found))]
        answer = RankResponse(ads=ads, model_version=service.model_version, retrieval=r.retrieval,
                              unknown={k: v for k, v in r.missing.items() if v}, query_source=r.query_source,
                              latency_ms=round(1000 * (time.perf_counter() - t), 3))
        # serialised by pydantic-core here; returning the model would validate and encode it a second time
        return Response(answer.model_dump_json(), media_type="application/json")

    @app.get("/metrics")
    def prometheus():
        metrics.circuit_open.set(float(service.lookup.breaker.state == "open"))
        for key, n in list(service.lookup.counters.items()):
            if key.startswith("corrupt_"):
                metrics.corrupt.labels(key.removeprefix("corrupt_")).set(n)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def build_service(models: str | Path, repo: str | Path, products: str | Path | None, checkpoint: str | Path | None,
                  retrieve_k: int = 100, retriever_kind: str = "flat", lookup_timeout_ms: float = LOOKUP_TIMEOUT_MS,
                  breaker_failures: int = 5, breaker_reset_s: float = 1.0, require_marker: bool = True) -> RankService:
    from dashclip.catalog import load_products
    from features.definitions import default_data_dir
    from features.online import default_encoder
    from features.build_index import open_retriever
    from features.online import OnlineLookup
    from features.retriever import RetrieverConfig
    from features.store import CircuitBreaker, open_store
    from ranking.model import Ranker

    ranker = Ranker.load(models)
    version = ranker.config.model_version
    store = open_store(repo)
    cats = {}
    if products:
        p = load_products(products)
        cats = dict(zip(p[DC.PRODUCT_ID], p[DC.CATEGORY]))
    table = default_data_dir(Path(repo)) / FC.PRODUCT_EMBEDDINGS_TABLE
    retriever = None
    if table.exists():
        retriever = open_retriever(table, version, RetrieverConfig(kind=retriever_kind))  # mapped, else built
    encode = default_encoder(checkpoint) if checkpoint else None
    lookup = OnlineLookup(store, version, encode=encode, timeout=lookup_timeout_ms / 1000, require_marker=require_marker,
                          breaker=CircuitBreaker(breaker_failures, breaker_reset_s))
    return RankService(store, ranker, version, cats, retriever=retriever, retrieve_k=retrieve_k, lookup=lookup)


def service_from_args(args) -> RankService:
    """The service the parsed server settings (``ranking.cli.serve_parser``) describe."""
    return build_service(args.ranker, args.feature_repo, args.catalog, args.checkpoint, args.retrieve_k, args.retriever,
                         args.lookup_timeout_ms, args.breaker_failures, args.breaker_reset_s, not args.no_store_marker)


def service_from_settings(args=None) -> tuple[RankService, int, int]:
    """The service (and body limit, rank threads) from parsed settings, by default ``DASHCLIP_SERVE_*``; logs the
    start-up line without an address (the process manager prints where it listens)."""
    from dashclip.cli import configure_logging
    from ranking.cli import check_paths, settings

    if args is None:
        args = settings()
        configure_logging(args.log_level)
    check_paths(args)
    service = service_from_args(args)
    log.info(startup_line(service))  # one per worker
    return service, args.max_body_bytes, args.rank_threads


def startup_line(service: RankService, address: str | None = None) -> str:
    """Where the server listens, what it serves and from which store (no credentials: host, port, db)."""
    from features.store import describe

    retrieval = (f"faiss {service.retriever.config.kind} over {len(service.retriever.ids)} products"
                 if service.retriever is not None else "none (requests name their candidates)")
    where = f" on {address}" if address else ""
    return (f"ads server{where}: model version {service.model_version}, ranker {service.ranker.config.name} "
            f"({len(service.ranker.features)} features), store {describe(service.lookup.client)}, retrieval {retrieval}")


def run_cli(args) -> int:
    """``python -m ranking.serve`` after parsing (``ranking.cli``): build, log the start-up line, serve."""
    import uvicorn

    from dashclip.cli import configure_logging
    from ranking.cli import export

    configure_logging(args.log_level)
    if args.workers > 1:  # each worker builds its own service from the same settings
        export(args)
        log.info("ads server on http://%s:%d: %d workers, ranker %s", args.host, args.port, args.workers, args.ranker)
        uvicorn.run("ranking.serve:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
                    log_level="warning", access_log=False)
        return 0
    service = service_from_args(args)
    app = create_app(service, args.max_body_bytes, args.rank_threads)
    log.info(startup_line(service, f"http://{args.host}:{args.port}"))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m ranking.serve ...`` (the parser is ``ranking.cli.serve_parser``)."""
    from ranking.cli import serve_main

    return serve_main(argv)
