"""The embedding routes of the local API server: OpenAI's `POST /v1/embeddings` and Ollama's
`POST /api/embed` and `POST /api/embeddings`, answered by the named model in llama.cpp's
embedding mode (an engine child of its own, through `ModelPool.use(..., embedding=True)`)."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request

from desktop.core.server import RequestRecord
from desktop.core.server.app import ApiError


def register(app: FastAPI, services, pool, record) -> None:
    """Add the embedding routes to the server's app (see the module)."""

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        record(RequestRecord(at=time.time(), client="", method="POST", path=request.url.path,
                             model="", status=501, tokens_in=None, tokens_out=None, duration_ms=0.0))
        raise ApiError(501, "Embeddings are not served yet.", type="not_implemented", code="not_implemented")
