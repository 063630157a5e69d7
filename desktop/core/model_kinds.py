"""What an installed model is for: chatting, or embeddings (turning text into vectors for search).

One rule, used by every place that chooses a chat model (the window's picker, Compare, the default
model of a new chat, `hearth chat -m`, the local server's chat routes): a model is for embeddings
when its GGUF architecture is one llama.cpp builds as an embedding-only model, or when its file
declares how to pool token vectors into one (`<arch>.pooling_type`). Such a model cannot write an
answer: llama.cpp either refuses to generate with it or writes nonsense.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from desktop.core.errors import HearthError
from desktop.core.text import shown

# Encoder-only architectures in llama.cpp (src/llama-arch.cpp, LLM_ARCH_NAMES): BERT and its
# descendants, and T5's encoder alone. llama-model.cpp builds them without a KV cache
# (create_memory returns none) and with non-causal attention: they read a text, they never
# continue it. The names are the GGUF `general.architecture` values (gguf-py MODEL_ARCH_NAMES).
ENCODER_ARCHITECTURES = frozenset({
    "bert", "modern-bert", "nomic-bert", "nomic-bert-moe", "neo-bert", "jina-bert-v2", "jina-bert-v3",
    "eurobert", "t5encoder",
})
# Decoder architectures that llama.cpp has only as embedding models (EmbeddingGemma's
# "gemma-embedding"; "llama-embed", llama with bidirectional attention for embeddings). Not
# "pangu-embedded": that one is a chat model meant for devices ("embedded"), not for embeddings.
EMBEDDING_ONLY_ARCHITECTURES = frozenset({"gemma-embedding", "llama-embed"})
EMBEDDING_ARCHITECTURES = ENCODER_ARCHITECTURES | EMBEDDING_ONLY_ARCHITECTURES

# llama.cpp's enum llama_pooling_type (include/llama.h): -1 unspecified, 0 none, 1 mean, 2 CLS,
# 3 last, 4 rank (a reranker's score). convert_hf_to_gguf writes it from a sentence-transformers
# model's pooling config, which chat models do not have.
POOLING_NAMES = {1: "mean", 2: "cls", 3: "last", 4: "rank"}

CHAT, EMBEDDING = "chat", "embedding"
EMBEDDING_LABEL = "Embeddings"
EMBEDDING_USE = "For document search and apps using /v1/embeddings; not a chat model."


class NotForChat(HearthError):
    """A chat was asked of an embedding model; str() is one sentence for the user."""

    def __init__(self, name: str) -> None:
        super().__init__(not_for_chat(name))
        self.name = name


def pooling_of(metadata: Mapping[str, Any]) -> str:
    """The pooling a GGUF file declares (`<general.architecture>.pooling_type`), by llama.cpp's
    name: "mean", "cls", "last" or "rank"; "" when the file declares none (every chat model), or
    declares 0 ("none": one vector per token) or a value llama.cpp does not know."""
    arch = str(metadata.get("general.architecture", ""))
    value = metadata.get(f"{arch}.pooling_type")
    return POOLING_NAMES.get(value, "") if isinstance(value, int) and not isinstance(value, bool) else ""


def for_embeddings(architecture: str, pooling: str | None) -> bool:
    """True when a model with this GGUF architecture and declared pooling (as `pooling_of`; None
    or "" for none) is an embedding model, not a chat model: an encoder-only or embedding-only
    architecture (EMBEDDING_ARCHITECTURES), or any declared pooling (decoder embedding models
    such as Qwen3-Embedding or gte-Qwen2 declare "last" or "mean"; rerankers "rank")."""
    return architecture.strip().lower() in EMBEDDING_ARCHITECTURES or bool(pooling)


def kind_of(architecture: str, pooling: str | None) -> str:
    """CHAT ("chat") or EMBEDDING ("embedding"), the words the model catalog uses (`Entry.kind`)."""
    return EMBEDDING if for_embeddings(architecture, pooling) else CHAT


def not_for_chat(name: str) -> str:
    """The one sentence said when a chat is asked of embedding model `name`."""
    return (f"“{shown(name)}” is an embedding model: it turns text into vectors for document search and "
            "apps using /v1/embeddings, and cannot chat. Choose a chat model.")
