"""Finding GGUF models on the Hugging Face hub (or a mirror): search, a repository's files grouped
by quantization, and which file to fetch. Transfers are downloads.py's job.

`huggingface_hub` does the talking, always with the endpoint passed explicitly; its calls block,
so they run in a worker thread. Names that come from the hub are never used as paths here.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass

from desktop.core.errors import HearthError
from desktop.core.library import SPLIT, safe_component

DEFAULT_ENDPOINT = "https://huggingface.co"
# Preferred quantizations when the user names none: good quality for their size.
PREFERRED = ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q4_0", "Q4_1", "Q5_0", "Q6_K", "Q8_0")
_QUANT = re.compile(r"(?<![A-Z0-9])(IQ\d_[A-Z]+|Q\d_K_[SML]|Q\d_K|Q\d_\d|TQ\d_\d|MXFP4|BF16|F16|F32)(?![A-Z0-9])",
                    re.IGNORECASE)


class HubError(HearthError):
    pass


def endpoint(explicit: str | None = None) -> str:
    return (explicit or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


@dataclass(frozen=True)
class RepoSummary:
    id: str
    downloads: int
    likes: int
    gated: bool


@dataclass(frozen=True)
class HubFile:
    name: str  # as the hub names it (may contain folders): never used as a path
    size: int
    sha256: str


@dataclass(frozen=True)
class Variant:
    """One quantization of a model: one file, or the parts of a split GGUF."""

    quantization: str
    files: tuple[HubFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class RepoFiles:
    repo: str
    revision: str
    license: str
    gated: bool
    variants: tuple[Variant, ...]


def quantization_of(filename: str) -> str:
    match = _QUANT.search(filename.rsplit("/", 1)[-1])
    return match.group(1).upper() if match else ""


def group_variants(files: list[HubFile]) -> tuple[Variant, ...]:
    """GGUF files grouped by quantization, split parts together in order, smallest first."""
    groups: dict[str, list[HubFile]] = {}
    for f in files:
        if not f.name.lower().endswith(".gguf"):
            continue
        base = SPLIT.sub("", f.name)
        key = base if SPLIT.search(f.name) else f.name
        groups.setdefault(key, []).append(f)
    variants = [Variant(quantization_of(key) or key.rsplit("/", 1)[-1], tuple(sorted(parts, key=lambda p: p.name)))
                for key, parts in groups.items()]
    return tuple(sorted(variants, key=lambda v: v.size))


def _api(endpoint_url: str, token: str | None):
    """huggingface_hub brings its own HTTP client (httpx2), so offline mode is checked here."""
    from huggingface_hub import HfApi

    from desktop.core import net

    net.check_allowed(endpoint_url)
    return HfApi(endpoint=endpoint_url, token=token)


def _hub_error(exc: Exception, what: str) -> HearthError:
    from desktop.core.net import OfflineError

    if isinstance(exc, OfflineError):
        return exc
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return HubError(f"The hub refused {what} ({status}): it is gated or private. Accept its licence on "
                        "the model's page and add your hub token.")
    if status == 404:
        return HubError(f"The hub has no {what} (404). Check the name.")
    return HubError(f"Could not reach the hub for {what}: {type(exc).__name__}. Are you online?")


async def search(query: str, *, endpoint_url: str, token: str | None = None, sort: str = "downloads",
                 limit: int = 20) -> list[RepoSummary]:
    def run() -> list[RepoSummary]:
        models = _api(endpoint_url, token).list_models(search=query, filter="gguf", sort=sort, limit=limit)
        return [RepoSummary(m.id, m.downloads or 0, m.likes or 0, bool(m.gated)) for m in models]

    try:
        return await asyncio.to_thread(run)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a sentence
        raise _hub_error(exc, f"models matching “{query}”") from exc


async def repo_files(repo: str, *, endpoint_url: str, token: str | None = None,
                     revision: str | None = None) -> RepoFiles:
    def run() -> RepoFiles:
        info = _api(endpoint_url, token).model_info(repo, revision=revision, files_metadata=True)
        files = [HubFile(s.rfilename, s.lfs.size if s.lfs else (s.size or 0), s.lfs.sha256 if s.lfs else "")
                 for s in info.siblings or []]
        card = info.card_data
        license_name = (card.get("license") if card is not None else None) or ""
        return RepoFiles(repo=info.id, revision=info.sha or (revision or "main"), license=str(license_name),
                         gated=bool(info.gated), variants=group_variants(files))

    try:
        return await asyncio.to_thread(run)
    except Exception as exc:  # noqa: BLE001
        raise _hub_error(exc, f"repository “{repo}”") from exc


def choose(files: RepoFiles, selector: str = "") -> Variant:
    """The variant a person asked for, by file name or quantization; else a good default."""
    if not files.variants:
        raise HubError(f"“{files.repo}” has no GGUF files. Hearth runs models in GGUF format; look for a "
                       "repository whose name ends in -GGUF.")
    if selector:
        for v in files.variants:
            if selector in (f.name for f in v.files) or selector.upper() == v.quantization:
                return v
        offered = ", ".join(v.quantization for v in files.variants)
        raise HubError(f"“{files.repo}” has no file or quantization “{selector}”. It offers: {offered}.")
    for quant in PREFERRED:
        for v in files.variants:
            if v.quantization == quant:
                return v
    return files.variants[0]


HEAD_BYTES = (256 << 10, 8 << 20)  # the architecture keys come first; the tokenizer can take megabytes


async def read_head(endpoint_url: str, repo: str, revision: str, filename: str, *, token: str | None = None,
                    local_only: bool = False):
    """The GGUF metadata at the start of a hub file, from a ranged GET: what llama.cpp needs to know
    about the model (architecture, layers, attention shape) without downloading it. The request
    runs in a worker thread, like the rest of the hub's traffic."""
    return await asyncio.to_thread(_read_head, endpoint_url, repo, revision, filename, token, local_only)


def _read_head(endpoint_url: str, repo: str, revision: str, filename: str, token: str | None, local_only: bool):
    from desktop.core import gguf, net
    from desktop.core.downloads import IDENTITY, content_range, refused_encoding

    url = file_url(endpoint_url, repo, revision, filename)
    headers = dict({"Authorization": f"Bearer {token}"} if token else {}, **IDENTITY)
    info = None
    with net.client(local_only=local_only, timeout=20.0) as client:
        for size in HEAD_BYTES:
            data = bytearray()
            try:
                with client.stream("GET", url, headers=dict(headers, Range=f"bytes=0-{size - 1}")) as resp:
                    if resp.status_code >= 400:
                        raise HubError(f"The hub answered {resp.status_code} for “{filename}”.")
                    # Only the file's own first bytes are a header: not a compressed body, not
                    # bytes from elsewhere in the file (a 200 is the whole file from its start).
                    why = refused_encoding(resp)
                    if not why and resp.status_code == 206:
                        checked = content_range(resp, 0, None)
                        why = checked if isinstance(checked, str) else ""
                    if why:
                        raise HubError(f"Could not read the start of “{filename}”: {why}.")
                    for chunk in resp.iter_raw():
                        data += chunk
                        if len(data) >= size:
                            break  # a server that ignores Range: stop reading
            except Exception as exc:  # noqa: BLE001 - transport failures become a sentence
                if isinstance(exc, HubError):
                    raise
                raise _hub_error(exc, f"the start of “{filename}”") from exc
            info = gguf.read_head(bytes(data[:size]), filename.rsplit("/", 1)[-1])
            if info.layers or len(data) < size:
                break
    return info


def file_url(endpoint_url: str, repo: str, revision: str, filename: str) -> str:
    from huggingface_hub import hf_hub_url

    return hf_hub_url(repo, filename, revision=revision, endpoint=endpoint_url)


def safe_filename(hub_name: str) -> str:
    """The name a hub file gets on disk: its last part, refused if it tries to leave its folder, and
    made harmless and bounded as library.safe_component makes names (hub names are untrusted)."""
    parts = hub_name.replace("\\", "/").split("/")
    if hub_name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise HubError(f"The hub named a file “{hub_name}”, which is not a safe file name. Hearth will not "
                       "download it.")
    return safe_component(parts[-1])
