"""The curated list of good open models shown before the user searches (resources/catalog.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from desktop.core.errors import HearthError
from desktop.core.paths import resources_dir

# Bits per weight of the common llama.cpp quantizations (llama.cpp's own figures for a 7B model,
# embeddings included): enough to say "about 4.9 GB" before the hub gives the real size.
BITS_PER_WEIGHT = {"Q2_K": 3.35, "Q3_K_M": 3.91, "Q4_0": 4.55, "Q4_1": 5.0, "Q4_K_S": 4.58, "Q4_K_M": 4.89,
                   "IQ4_XS": 4.46, "Q5_K_S": 5.54, "Q5_K_M": 5.7, "Q6_K": 6.56, "Q8_0": 8.5, "F16": 16.0}


class CatalogError(HearthError):
    pass


@dataclass(frozen=True)
class Entry:
    name: str
    family: str
    repo: str
    files: dict[str, str]  # quantization: file name in the repo
    parameters_b: float
    license: str
    context_length: int
    good_for: str
    layers: int
    kv_heads: int
    head_dim: int
    # "chat" (the default) or "embedding": a model that turns text into vectors for search (the
    # local server's /v1/embeddings, documents search) and cannot chat. Pickers of chat models
    # leave the embedding ones out.
    kind: str = "chat"

    @property
    def is_embedding(self) -> bool:
        return self.kind == "embedding"

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """f16 keys and values for `n_ctx` tokens (the same formula gguf.py uses on a real file)."""
        return n_ctx * self.layers * self.kv_heads * self.head_dim * 2 * 2

    def approx_size(self, quantization: str) -> int:
        bits = BITS_PER_WEIGHT.get(quantization.upper(), 5.0)
        return int(self.parameters_b * 1e9 * bits / 8)

    @property
    def default_quantization(self) -> str:
        return "Q4_K_M" if "Q4_K_M" in self.files else next(iter(self.files))


def load(path: Path | None = None) -> list[Entry]:
    path = path or resources_dir() / "catalog.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return [Entry(name=m["name"], family=m["family"], repo=m["repo"], files=dict(m["files"]),
                      parameters_b=float(m["parameters_b"]), license=m["license"],
                      context_length=int(m["context_length"]), good_for=m["good_for"],
                      layers=int(m["attention"]["layers"]), kv_heads=int(m["attention"]["kv_heads"]),
                      head_dim=int(m["attention"]["head_dim"]), kind=str(m.get("kind", "chat")))
                for m in doc["models"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CatalogError(f"Hearth's model catalog ({path}) could not be read ({type(exc).__name__}); "
                           "search the hub instead.") from exc
