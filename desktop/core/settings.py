"""Typed settings with one table of defaults, kept as a JSON file in the config folder.

Secrets never live here: they go through `secrets.py`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from desktop.core.files import write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampling:
    """How an answer is sampled. Kept per conversation; new conversations copy the defaults."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    max_tokens: int = 1024
    seed: int = -1  # -1: a new random seed for every answer

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Sampling":
        return _coerce(cls, data or {})


@dataclass(frozen=True)
class LoadOptions:
    """How a local model is loaded into the engine."""

    n_ctx: int = 4096  # capped at the model's own context length when loading
    n_gpu_layers: int = -1  # -1: as many as the GPU takes; ignored by a CPU-only build
    n_threads: int = 0  # 0: one per physical core

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "LoadOptions":
        return _coerce(cls, data or {})


@dataclass(frozen=True)
class ServerSettings:
    """The local API server (`core/server`): off until the user turns it on. Its key, when it
    serves the network, lives in the keyring (secrets name "local-server"), never here."""

    enabled: bool = False  # started with the window (its state survives a restart)
    port: int = 4784  # "HRTH" on a phone's keypad; LM Studio uses 1234, Ollama 11434, Jan 1337
    network: bool = False  # serve on every interface (needs a key), not only 127.0.0.1
    origins: tuple[str, ...] = ()  # web origins allowed by CORS, e.g. "http://localhost:3000"
    ttl_s: int = 600  # a model an app loaded is unloaded after this many idle seconds
    log_bodies: bool = False  # keep prompts and answers in the request log (off: figures only)
    cloud: tuple[str, ...] = ()  # providers the server may forward requests to (PROVIDER/MODEL)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "ServerSettings":
        data = data if isinstance(data, dict) else {}
        origins, cloud = data.get("origins"), data.get("cloud")
        return replace(_coerce(cls, data),
                       origins=tuple(str(o) for o in origins) if isinstance(origins, list) else (),
                       cloud=tuple(str(c) for c in cloud) if isinstance(cloud, list) else ())


@dataclass(frozen=True)
class Settings:
    sampling: Sampling = field(default_factory=Sampling)
    load: LoadOptions = field(default_factory=LoadOptions)
    system_prompt: str = "You are a helpful assistant."
    last_model: str = ""
    offline: bool = False  # no connection to anything but this machine (net.py enforces it)
    electricity_watts: float = 0.0  # the computer's draw while answering; 0: not counted
    electricity_price_kwh: float = 0.0  # dollars per kWh
    server: ServerSettings = field(default_factory=ServerSettings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Settings":
        base = cls()
        return replace(
            base,
            sampling=Sampling.from_dict(data.get("sampling")),
            load=LoadOptions.from_dict(data.get("load")),
            system_prompt=_typed(data.get("system_prompt"), base.system_prompt),
            last_model=_typed(data.get("last_model"), base.last_model),
            offline=_typed(data.get("offline"), base.offline),
            electricity_watts=_typed(data.get("electricity_watts"), base.electricity_watts),
            electricity_price_kwh=_typed(data.get("electricity_price_kwh"), base.electricity_price_kwh),
            server=ServerSettings.from_dict(data.get("server")),
        )


def _typed(value: Any, default: Any) -> Any:
    """`value` when it has the default's type (ints are accepted for floats), else the default."""
    if isinstance(default, bool):
        return value if isinstance(value, bool) else default
    if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, type(default)) and not isinstance(value, bool):
        return value
    return default


def _coerce(cls: type, data: dict[str, Any]) -> Any:
    defaults = cls()
    values = {f.name: _typed(data.get(f.name), getattr(defaults, f.name)) for f in fields(cls)}
    return cls(**values)


class SettingsFile:
    """Reads and writes settings.json; a damaged file is set aside and the defaults used."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Settings:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("settings are not a JSON object")
        except FileNotFoundError:
            return Settings()
        except (OSError, ValueError) as exc:
            aside = self.path.with_suffix(".damaged.json")
            log.warning("settings file %s is unreadable (%s); using defaults, old file kept as %s",
                        self.path, exc, aside.name)
            try:
                os.replace(self.path, aside)
            except OSError:
                pass
            return Settings()
        return Settings.from_dict(raw)

    def save(self, settings: Settings) -> None:
        write_json(self.path, settings.to_dict())
