"""The ads server: FastAPI app answering ranking requests with online features from Redis.

    python -m ranking.serve --models runs/ranker/models/with_embeddings --checkpoint runs/pipeline/stage2 \
        [--repo feature_repo] [--products runs/pipeline/ingest] [--host 127.0.0.1] [--port 8000]

- `POST /rank` {consumer_id, query, query_id?, candidate_ids?, k=10}: ranked ads with pCTR, pCVR
  and score (pCTR × pCVR). Without candidate_ids the faiss index over the model version's
  product embeddings retrieves `--retrieve-k` candidates. Unknown products / consumer / query
  are scored with missing features and flagged (`unknown`, per-ad `known`).
- `GET /health`: 200 when Redis answers, else 503 with the reason.
- `GET /metrics`: Prometheus text: request counts by route and status, latency histogram,
  unknown entities, Redis errors.
- Malformed requests: 422 naming the field (pydantic); bodies over `--max-body-bytes`: 413;
  Redis down: 503 with the reason, and the next request after Redis is back succeeds.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Annotated

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from dashclip import columns as DC
from features import columns as FC
from features.store import OnlineStoreUnavailable
from ranking.online import RankService

log = logging.getLogger(__name__)

MAX_CANDIDATES = 1000
MAX_BODY_BYTES = 256 * 1024
Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class RankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    consumer_id: Id
    query: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    query_id: Id | None = None
    candidate_ids: list[Id] | None = Field(None, max_length=MAX_CANDIDATES)
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


def create_app(service: RankService, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    app = FastAPI(title="DashCLIP ads ranker")
    metrics = Metrics()
    app.state.service, app.state.metrics = service, metrics

    @app.middleware("http")
    async def limits_and_metrics(request: Request, call_next):
        t = time.perf_counter()
        route = request.url.path if request.url.path in ("/rank", "/health", "/metrics") else "other"
        size = request.headers.get("content-length")
        if request.method == "POST" and (size is None or int(size) > max_body_bytes):
            body = await request.body() if size is None else b""
            if size is not None or len(body) > max_body_bytes:
                response = JSONResponse(status_code=413, content={"detail": f"request body over {max_body_bytes} bytes"})
                metrics.requests.labels(route, "413").inc()
                return response
        response = await call_next(request)
        metrics.latency.labels(route).observe(time.perf_counter() - t)
        metrics.requests.labels(route, str(response.status_code)).inc()
        return response

    @app.exception_handler(OnlineStoreUnavailable)
    async def redis_down(request: Request, exc: OnlineStoreUnavailable):
        metrics.redis_errors.inc()
        return JSONResponse(status_code=503, content={"detail": "online feature store unavailable", "reason": str(exc)})

    @app.post("/rank", response_model=RankResponse)
    def rank(req: RankRequest) -> RankResponse:
        t = time.perf_counter()
        r = service.rank(req.consumer_id, req.query, req.candidate_ids, req.k, query_id=req.query_id)
        for entity, ids in r.missing.items():
            if ids:
                metrics.unknown.labels(entity).inc(len(ids))
        ads = [Ad(product_id=p, rank=i + 1, score=float(s), pctr=float(c), pcvr=float(v), known=bool(f))
               for i, (p, s, c, v, f) in enumerate(zip(r.product_ids, r.score, r.pctr, r.pcvr, r.product_found))]
        return RankResponse(ads=ads, model_version=service.model_version, retrieval=r.retrieval,
                            unknown={k: v for k, v in r.missing.items() if v}, query_source=r.query_source,
                            latency_ms=round(1000 * (time.perf_counter() - t), 3))

    @app.get("/health")
    def health():
        try:
            service.ping()
        except OnlineStoreUnavailable as e:
            return JSONResponse(status_code=503, content={"status": "unavailable", "reason": str(e)})
        return {"status": "ok", "model_version": service.model_version, "ranker": service.ranker.config.name,
                "features": service.ranker.features}

    @app.get("/metrics")
    def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def build_service(models: str | Path, repo: str | Path, products: str | Path | None, checkpoint: str | Path | None,
                  retrieve_k: int = 100, retriever_kind: str = "flat") -> RankService:
    from dashclip.catalog import load_products
    from features.definitions import default_data_dir
    from features.online import default_encoder
    from features.build_index import open_retriever
    from features.retriever import RetrieverConfig
    from features.store import open_store
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
    return RankService(store, ranker, version, cats, encode=encode, retriever=retriever, retrieve_k=retrieve_k)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ranking.serve", description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="runs/ranker/models/with_embeddings", help="a ranker folder from ranking.train")
    ap.add_argument("--repo", default="feature_repo", help="Feast repo (feast apply + materialize done)")
    ap.add_argument("--products", default="runs/pipeline/ingest", help="ingested products (for product categories)")
    ap.add_argument("--checkpoint", default=None, help="DashCLIP checkpoint whose query tower embeds unseen queries")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--retrieve-k", type=int, default=100)
    ap.add_argument("--retriever", default="flat", choices=["flat", "hnsw", "ivf", "ivfpq"],
                    help="kind built in memory when no index is published (python -m features.build_index)")
    ap.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    import uvicorn

    service = build_service(args.models, args.repo, args.products, args.checkpoint, args.retrieve_k, args.retriever)
    app = create_app(service, args.max_body_bytes)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
