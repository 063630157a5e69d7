"""Builds the core services once, for the command line and the window alike."""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
from dataclasses import dataclass, field

from desktop.core import net
from desktop.core.chat import ChatService
from desktop.core.cloud import Providers
from desktop.core.download_queue import DownloadQueue
from desktop.core.engine import Engine
from desktop.core.library import Library
from desktop.core.paths import Paths, app_paths
from desktop.core.pricing import Pricing
from desktop.core.settings import Settings, SettingsFile
from desktop.core.store import DatabaseBusy, Store


@dataclass
class Services:
    paths: Paths
    store: Store
    library: Library
    engine: Engine
    settings_file: SettingsFile
    settings: Settings
    downloads: DownloadQueue
    providers: Providers
    pricing: Pricing
    chat: ChatService = field(init=False)

    def __post_init__(self) -> None:
        net.set_offline(self.settings.offline)
        self.chat = self.chat_service(self.engine)

    def chat_service(self, engine: Engine) -> ChatService:
        """A chat service over this app's data; each comparison column gets its own with its own engine."""
        service = ChatService(self.store, self.library, engine, lambda: self.settings, self.providers, self.pricing)
        service.embedder_finder = self._find_embedder  # documents (issue 18): hybrid search when one is installed
        return service

    def _find_embedder(self):
        from desktop.core.docs.embedder import find_embedder

        return find_embedder(self)

    def save_settings(self, settings: Settings) -> None:
        self.settings = settings
        self.settings_file.save(settings)
        net.set_offline(settings.offline)

    def close(self) -> None:
        self.engine.stop_now()
        self.store.close()


def setup_logging(paths: Paths, *, verbose: bool = False) -> None:
    handler = logging.handlers.RotatingFileHandler(paths.logs / "hearth.log", maxBytes=2_000_000,
                                                   backupCount=2, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def open_services(paths: Paths | None = None) -> Services:
    paths = paths or app_paths()
    store = Store(paths.database)
    try:
        store.close_interrupted_answers()
    except DatabaseBusy:  # another program holds the database: the answers cut off wait for the next start
        logging.getLogger(__name__).info("the database is locked; interrupted answers are marked next time")
    settings_file = SettingsFile(paths.settings_file)
    from desktop.core import hub, secrets

    library = Library(store, paths)
    queue = DownloadQueue(library, paths.data / "downloads.json", endpoint_url=hub.endpoint,
                          token=secrets.hub_token)
    engine = Engine(paths)

    def keep_known_format(model, chat_format: str) -> None:
        """A template that had to be killed is not tried again, in this run or the next."""
        if model.chat_format in ("", "auto"):
            with contextlib.suppress(KeyError):  # a .gguf chatted with by path has no record
                store.set_chat_format(model.id, chat_format)

    engine.on_template_hung = keep_known_format
    return Services(paths=paths, store=store, library=library, engine=engine,
                    settings_file=settings_file, settings=settings_file.load(), downloads=queue,
                    providers=Providers(paths.config / "providers.json"),
                    pricing=Pricing(paths.config / "pricing.json"))
