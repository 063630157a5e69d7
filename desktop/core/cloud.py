"""The chat endpoints a user has added besides Hearth's own engine ("providers"): cloud services
and servers on their own hardware. Kept in providers.json in the config folder, without keys:
a key goes through secrets.py under the provider's name (so `HEARTH_KEY_OPENAI` works too), and
a key written into an address (`user:pass@`, `?api-key=`) is taken out of it before it is kept.

Nothing here is used unless the user added a provider; a cloud target is written
`PROVIDER/MODEL_NAME`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from desktop.core import net, secrets
from desktop.core.errors import HearthError
from desktop.core.files import write_json
from desktop.core.paths import resources_dir
from desktop.core.providers import Endpoint, api_url, error_for
from desktop.core.store import THIS_MACHINE
from desktop.core.text import shown

log = logging.getLogger(__name__)

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
KINDS = ("openai", "anthropic")
ANTHROPIC_VERSION = "2023-06-01"
CLOUD_TIMEOUT_S = 120.0


class ProviderSetupError(HearthError):
    pass


@dataclass(frozen=True)
class Provider:
    name: str  # short, lower case: the first part of PROVIDER/MODEL
    label: str
    kind: str  # "openai" (OpenAI-compatible) or "anthropic"
    base_url: str
    own: bool = False  # runs on the user's own hardware (a self-hosted server)
    keys_at: str = ""  # where a person gets a key
    added_at: float = 0.0  # when the user added it (and agreed that words sent there leave the machine)
    models: tuple[str, ...] = ()  # its model names, as last listed

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    @property
    def on_this_machine(self) -> bool:
        return net.is_loopback(self.host)

    @property
    def processed_on(self) -> str:
        return THIS_MACHINE if self.on_this_machine else self.host

    @property
    def key(self) -> str | None:
        return secrets.get(self.name)


@dataclass(frozen=True)
class CloudTarget:
    provider: Provider
    model: str

    @property
    def id(self) -> str:
        return f"{self.provider.name}/{self.model}"

    @property
    def title(self) -> str:
        """How the window names it: the provider as people know it, and the model."""
        return f"{self.provider.label} · {self.model}"


# Query parameters that carry a key rather than a setting (`api-version` is a setting).
_SECRET_PARAMS = {"key", "apikey", "token", "auth", "secret", "password", "passwd", "pwd", "sig", "signature",
                  "code"}  # code: Azure Functions' key


def _is_secret_param(name: str) -> bool:
    name = name.lower().replace("-", "_")
    return (name in _SECRET_PARAMS or name.endswith(("_key", "_token", "_secret", "_password"))
            or "password" in name)


@dataclass(frozen=True)
class Address:
    """A base URL as the user typed it, split into what may be kept and shown (`url`: no
    credentials, no key in the query, other query parameters kept) and the secrets it carried
    (each value with where it was, for a sentence: "a password", "api-key=")."""

    url: str
    found: tuple[tuple[str, str], ...] = ()

    @property
    def secret(self) -> str:
        return self.found[0][0] if self.found else ""

    @property
    def carried(self) -> str:
        return ", ".join(where for _, where in self.found)


def clean_address(url: str) -> Address:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise ProviderSetupError(f"“{secrets.redact(url)}” is not a web address: it should look like "
                                 "https://host/v1.") from None
    found: dict[str, str] = {}
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        value = unquote(password if colon else user)
        if value:
            found.setdefault(value, "a password" if colon else "a user name")
    kept = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if not _is_secret_param(name):
            kept.append((name, value))
        elif value:
            found.setdefault(value, f"{name}=")
    # Parameters in the path (`/v1;api-key=…`, RFC 3986 3.3) are read the same way.
    segments = []
    for segment in parts.path.split("/"):
        head, *params = segment.split(";")
        for param in params:
            name, _, value = param.partition("=")
            if _is_secret_param(unquote(name)):
                if value:
                    found.setdefault(unquote(value), f";{unquote(name)}=")
            else:
                head += ";" + param
        segments.append(head)
    path = "/".join(segments)
    clean = urlunsplit((parts.scheme, netloc, path.rstrip("/"), urlencode(kept), ""))
    return Address(clean, tuple(found.items()))


def presets() -> list[Provider]:
    data = json.loads((resources_dir() / "providers.json").read_text(encoding="utf-8"))
    return [Provider(**p) for p in data["presets"]]


def preset(name: str) -> Provider | None:
    return next((p for p in presets() if p.name == name), None)


class Providers:
    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[Provider]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("providers file %s is unreadable: %s", self.path, exc)
            return []
        known = {f for f in Provider.__dataclass_fields__}
        providers = []
        moved = False
        for p in raw if isinstance(raw, list) else ():
            if isinstance(p, dict):
                data = {k: v for k, v in p.items() if k in known}
                data["models"] = tuple(str(m) for m in data.get("models") or ())
                provider = Provider(**data)
                clean, kept_safe = self._without_secrets(provider)
                moved |= kept_safe
                providers.append(clean)
        if moved:
            self._save(providers)
        return providers

    @staticmethod
    def _without_secrets(provider: Provider) -> tuple[Provider, bool]:
        """A provider saved by an older Hearth with a secret in its address (a password, an
        `api-key=`): the address without it, and whether the file may now be rewritten without it
        (the key went to the keyring, or the keyring already holds one). Until then the file keeps
        its text, so nothing is lost; the address shown and used never carries the secret."""
        try:
            address = clean_address(provider.base_url)
        except ProviderSetupError:
            return provider, False
        if not address.found:
            return provider, False
        clean = replace(provider, base_url=address.url)
        held = secrets.kept(provider.name)
        if held == address.secret:
            return clean, True  # the keyring holds this key: the address had a copy
        if held is None and len(address.found) == 1:
            return clean, secrets.put(provider.name, address.secret)  # False: memory only, keep the file
        if held is None:
            log.warning("provider %s: its address carries several secrets; give its key again", provider.name)
        else:
            log.warning("provider %s: its address carries a key other than the one kept for it", provider.name)
        return clean, False
        if secrets.get(provider.name) == address.secret:
            return clean, True  # the keyring already holds this key: the address had a copy
        log.warning("provider %s: its address carries a key other than the one kept for it", provider.name)
        return clean, False

    def get(self, name: str) -> Provider:
        for p in self.all():
            if p.name == name:
                return p
        raise ProviderSetupError(f"There is no provider called “{name}”. Add it first (hearth providers add "
                                 f"{name} --base-url URL), or see the list with: hearth providers list")

    def find(self, name: str) -> Provider | None:
        return next((p for p in self.all() if p.name == name), None)

    def add(self, name: str, *, base_url: str = "", kind: str = "", label: str = "",
            own: bool | None = None, key: str = "") -> Provider:
        """Add a provider: a preset by its name, or any endpoint with its base URL. Its key (`key`,
        or one written into the address) goes to the keyring; the address is kept without it."""
        import httpx
        name = name.strip().lower()
        if not NAME.match(name):
            raise ProviderSetupError(f"“{shown(secrets.redact(name))}” cannot be a provider's name: use up to 32 "
                                     "lower-case letters, digits, - or _.")
        base = preset(name)
        address = clean_address(base_url or (base.base_url if base else ""))
        base_url = address.url
        if not base_url:
            raise ProviderSetupError(f"“{name}” is not a known service: give its address with --base-url "
                                     "(for example http://my-server:8000/v1).")
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ProviderSetupError(f"“{base_url}” is not a web address: it should look like "
                                     "https://host/v1.")
        kind = kind or (base.kind if base else "openai")
        if kind not in KINDS:
            raise ProviderSetupError(f"A provider speaks one of: {', '.join(KINDS)}; not “{kind}”.")
        key = key.strip()
        if len(address.found) > 1:
            raise ProviderSetupError(f"The address carries more than one secret ({address.carried}), and Hearth "
                                     "keeps one key per provider: give the address without them, and the key "
                                     "on its own.")
        if address.secret:
            if key and key != address.secret:
                raise ProviderSetupError(f"The address carries a key ({address.carried}) and you gave another "
                                         "one: give the address without it, and the key on its own.")
            held = secrets.get(name)
            if not key and held and held != address.secret:
                raise ProviderSetupError(f"The address carries a key ({address.carried}), but “{name}” already "
                                         "has another one. Give the address without it; to change the key, give "
                                         "the new key on its own.")
            key = address.secret
        provider = Provider(name=name, label=label or (base.label if base else name), kind=kind, base_url=base_url,
                            own=bool(own if own is not None else (base.own if base else False)),
                            keys_at=base.keys_at if base else "", added_at=time.time(),
                            models=old.models if (old := self.find(name)) and old.base_url == base_url else ())
        self._save([p for p in self.all() if p.name != name] + [provider])
        if key:
            secrets.put(name, key)
        return provider

    def set_models(self, name: str, models: list[str]) -> Provider:
        updated = replace(self.get(name), models=tuple(models))
        self._save([updated if p.name == name else p for p in self.all()])
        return updated

    def targets(self) -> list[CloudTarget]:
        """Every model of every provider, as last listed."""
        return [CloudTarget(p, m) for p in self.all() for m in p.models]

    def remove(self, name: str) -> Provider:
        provider = self.get(name)
        self._save([p for p in self.all() if p.name != name])
        secrets.forget(name)
        return provider

    def _save(self, providers: list[Provider]) -> None:
        write_json(self.path, [asdict(p) for p in providers])

    def target(self, ref: str) -> CloudTarget | None:
        """`PROVIDER/MODEL` when PROVIDER is one of the user's providers; else None (a local model)."""
        name, slash, model = ref.partition("/")
        if not slash or not model:
            return None
        provider = self.find(name)
        return CloudTarget(provider, model) if provider else None


def endpoint(target: CloudTarget) -> Endpoint:
    p = target.provider
    key = p.key
    if not key and not p.on_this_machine and not p.own:
        raise ProviderSetupError(f"{p.label} needs an API key. Add it in Providers, or with: hearth providers add "
                                 f"{p.name} --key-stdin (or set {secrets.env_name(p.name)}).")
    return Endpoint(base_url=p.base_url, api_key=key or "", model=target.model, provider=p.name,
                    processed_on=p.processed_on, local=False, kind=p.kind, label=p.label,
                    timeout_s=CLOUD_TIMEOUT_S)


async def list_models(provider: Provider) -> list[str]:
    """The provider's model names (which also tests the address and the key)."""
    import httpx
    key = provider.key or ""
    if provider.kind == "anthropic":
        url = api_url(provider.base_url, "/v1/models")
        headers = {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
    else:
        url = api_url(provider.base_url, "/models")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
    probe = Endpoint(base_url=provider.base_url, api_key="", model="", provider=provider.name,
                     processed_on=provider.processed_on, local=False, label=provider.label)
    try:
        async with net.async_client(local_only=False, timeout=20.0) as client:
            response = await client.get(url, headers=headers, params={"limit": 1000} if provider.kind == "anthropic" else None)
    except net.OfflineError:
        raise
    except httpx.TimeoutException:
        raise ProviderSetupError(f"{provider.label} did not answer within 20 s.") from None
    except httpx.HTTPError as exc:
        raise ProviderSetupError(f"Hearth could not reach {provider.host} ({type(exc).__name__}). Check the "
                                 "address and your network connection.") from None
    if response.status_code >= 400:
        if response.status_code == 404:
            raise ProviderSetupError(f"{provider.label} has no model list at {secrets.redact(url)} (404): check "
                                     "the address; OpenAI-compatible servers usually end in /v1.")
        raise error_for(response.status_code, response.text[:200], probe, response.headers)
    try:
        data = response.json().get("data", [])
        return sorted(str(m["id"]) for m in data if isinstance(m, dict) and "id" in m)
    except (ValueError, AttributeError):
        raise ProviderSetupError(f"{provider.label} answered, but not with a list of models: is "
                                 f"{secrets.redact(provider.base_url)} the right address?") from None
