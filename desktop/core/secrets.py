"""API keys and hub tokens: through the system keyring, never on disk in clear.

Order of lookup for a secret called NAME: the environment variable `HEARTH_KEY_<NAME>` (for
scripts; read at use, never stored), then the keyring, then this run's memory (where the machine
has no keyring, a key entered in the app lives only until Hearth closes, and the app says so).
Nothing here logs a secret's value.
"""

from __future__ import annotations

import logging
import os
import re

SERVICE = "Hearth"
HUB = "huggingface"

log = logging.getLogger(__name__)
_memory: dict[str, str] = {}


def env_name(name: str) -> str:
    return "HEARTH_KEY_" + name.upper().replace("-", "_")


def _keyring():
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 1) <= 0:
        return None
    return keyring


def keyring_available() -> bool:
    return _keyring() is not None


def get(name: str) -> str | None:
    """The secret NAME: from `HEARTH_KEY_<NAME>`, else the keyring, else this run's memory."""
    value = os.environ.get(env_name(name))
    if value:
        return value
    return kept(name) or _memory.get(name)


def kept(name: str) -> str | None:
    """The secret NAME as the system keyring holds it (what survives a restart), or None."""
    ring = _keyring()
    if ring is None:
        return None
    try:
        return ring.get_password(SERVICE, name) or None
    except Exception as exc:  # noqa: BLE001 - a locked or broken keyring is not fatal
        log.warning("keyring lookup of %s failed: %s", name, type(exc).__name__)
        return None


def put(name: str, value: str) -> bool:
    """Keep a secret; True when it went to the keyring, False when only in memory for this run."""
    ring = _keyring()
    if ring is not None:
        try:
            ring.set_password(SERVICE, name, value)
            _memory.pop(name, None)
            return True
        except Exception as exc:  # noqa: BLE001
            log.warning("keyring refused %s: %s; keeping it in memory", name, type(exc).__name__)
    _memory[name] = value
    return False


def in_memory_only(name: str) -> bool:
    """True when the secret NAME was kept for this run only (the keyring refused it or there is none)."""
    return name in _memory


def forget(name: str) -> None:
    _memory.pop(name, None)
    ring = _keyring()
    if ring is not None:
        try:
            ring.delete_password(SERVICE, name)
        except Exception:  # noqa: BLE001 - nothing stored is fine
            pass


def hub_token() -> str | None:
    """The token for gated hub models: Hearth's own, else the one huggingface_hub keeps
    (`HF_TOKEN`, or `huggingface-cli login`)."""
    own = get(HUB)
    if own:
        return own
    from huggingface_hub import get_token

    return get_token()


def hub_token_source() -> str:
    if os.environ.get(env_name(HUB)):
        return f"from {env_name(HUB)}"
    ring = _keyring()
    if ring is not None and get(HUB):
        return "in the system keyring"
    if _memory.get(HUB):
        return "in memory until Hearth closes (this computer has no keyring)"
    from huggingface_hub import get_token

    return "from huggingface_hub's login" if get_token() else ""


# Key-like strings in text Hearth shows or saves about a provider (its list, its errors): known key
# prefixes, a value after key=/token=/password=…, a bearer token, a password in an address.
_PREFIXED = re.compile(r"\b(sk-(?:ant-(?:api\d+-)?|proj-)?|hf_|gsk_|xai-|ghp_|gho_|github_pat_|glpat-|AIza)"
                       r"[A-Za-z0-9_\-]{8,}")
_ASSIGNED = re.compile(r"(?i)([\w.-]*(?:key|token|secret|passw(?:or)?d|pwd|sig|signature))"
                       r"(=|[\"']?\s*:\s*[\"']?)([^\s&\"',;)}\]]+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]+@")


def _assigned(match: re.Match[str]) -> str:
    name, sign, value = match.groups()
    if sign != "=" and len(value) < 12:  # "key: model" in a sentence is not a key
        return match.group(0)
    return f"{name}{sign}…"


def redact(text: str) -> str:
    """`text` with anything that looks like a key, token or password replaced by “…”."""
    text = _USERINFO.sub(r"\1:…@", text)
    text = _PREFIXED.sub(lambda m: m.group(1) + "…", text)
    text = _BEARER.sub(lambda m: m.group(1) + " …", text)
    return _ASSIGNED.sub(_assigned, text)
