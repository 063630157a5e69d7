"""Vectors for the document index: an installed embedding model in an engine child of its own, in
llama.cpp's embedding mode (engine.Engine(embedding=True), its /hearth/v1/embeddings route),
loaded on first use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import httpx

from desktop.core import net
from desktop.core.errors import HearthError
from desktop.core.store import ModelRecord

BATCH = 32  # passages per request to the engine child

# Instructions some embedding models were trained with, by a piece of their name (lower case):
# (before a document, before a search query). nomic-embed-text v1.5's model card asks for
# "search_document: " and "search_query: "; BGE v1.5 English's card gives its query instruction
# for short queries against passages ("Represent this sentence for searching relevant passages: ").
PREFIXES: tuple[tuple[str, str, str], ...] = (
    ("nomic-embed", "search_document: ", "search_query: "),
    ("bge-", "", "Represent this sentence for searching relevant passages: "),
)


class EmbedderError(HearthError):
    """Vectors could not be made (the engine failed to load or stopped); str() says why."""


def _prefixes(model: ModelRecord) -> tuple[str, str]:
    names = " ".join((model.id, model.name, model.repo, model.file)).lower()
    for piece, document, query in PREFIXES:
        if piece in names:
            return document, query
    return "", ""


class Embedder:
    """One embedding model's vectors. `model_id`: the installed model's id; `dimensions`: the
    numbers in each vector (0 until the model is loaded). `close()` stops its engine child."""

    def __init__(self, services, model: ModelRecord) -> None:
        from desktop.core.engine import Engine

        self.services = services
        self.model = model
        self.engine = Engine(services.paths, embedding=True, log_name="embedder")
        self.dimensions = 0
        self._http: httpx.AsyncClient | None = None
        self._document_prefix, self._query_prefix = _prefixes(model)

    @property
    def model_id(self) -> str:
        return self.model.id

    async def ensure(self) -> None:
        """Load the model (once); raises EmbedderError with llama.cpp's reason when it cannot."""
        try:
            await self.engine.ensure(self.model, self.services.settings.load)
        except HearthError as exc:
            raise EmbedderError(str(exc)) from exc
        if self._http is None:
            self._http = net.async_client(local_only=True, timeout=httpx.Timeout(600.0, connect=10.0))

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit vector per text (passages of documents), in order, BATCH texts per request.
        A text longer than the model's context is cut to it (the vector stands for its start)."""
        return await self._embed([self._document_prefix + t for t in texts])

    async def embed_query(self, text: str) -> list[float]:
        """The unit vector of a search query (with the model's query instruction, if it has one)."""
        return (await self._embed([self._query_prefix + text]))[0]

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        from desktop.core.server.embed import EngineGone, EngineRefused, embed_on
        from desktop.core.server.pool import Lease

        await self.ensure()
        lease = Lease(model=self.model, endpoint=self.engine.endpoint(), n_ctx=self.engine.n_ctx, engine=self.engine)
        vectors: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            batch = [t if t.strip() else " " for t in texts[start:start + BATCH]]
            try:
                got = await embed_on(self._http, lease, batch, truncate=True)
            except (EngineRefused, EngineGone) as exc:
                raise EmbedderError(f"The embedding model “{self.model.name}” could not make vectors: {exc}") from exc
            self.dimensions = int(got["vectors"].shape[1])
            vectors.extend(got["vectors"].tolist())
        return vectors

    async def close(self) -> None:
        """Stop the engine child and the connection to it."""
        if self._http is not None:
            with contextlib.suppress(Exception):
                await self._http.aclose()
            self._http = None
        await self.engine.stop()


def embedding_models(services) -> list[ModelRecord]:
    """The installed embedding models (model_kinds' rule: ModelRecord.for_embeddings), most
    recently used or added first."""
    found = [m for m in services.library.models() if getattr(m, "for_embeddings", False)]
    return sorted(found, key=lambda m: (m.last_used_at or 0, m.added_at), reverse=True)


def find_embedder(services) -> Embedder | None:
    """An Embedder on the installed embedding model (the most recently used or added when there
    are several), or None when none is installed: search is then BM25 alone."""
    models = embedding_models(services)
    return Embedder(services, models[0]) if models else None
