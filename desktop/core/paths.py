"""Every on-disk location Hearth uses. `HEARTH_HOME` puts all of them under one folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP_NAME = "Hearth"


@dataclass(frozen=True)
class Paths:
    data: Path
    config: Path
    models: Path
    logs: Path
    cache: Path

    @property
    def database(self) -> Path:
        return self.data / "hearth.db"

    @property
    def settings_file(self) -> Path:
        return self.config / "settings.json"

    def ensure(self) -> "Paths":
        for folder in (self.data, self.config, self.models, self.logs, self.cache):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def resources_dir() -> Path:
    """Icons and data files: inside the frozen app when packaged, else the repository's folder."""
    import sys

    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def app_paths(home: str | os.PathLike[str] | None = None) -> Paths:
    """Where Hearth keeps things: `home`, else $HEARTH_HOME, else the platform's user folders."""
    root = home if home is not None else os.environ.get("HEARTH_HOME")
    if root:
        base = Path(root).expanduser().resolve()
        paths = Paths(
            data=base / "data",
            config=base / "config",
            models=base / "models",
            logs=base / "logs",
            cache=base / "cache",
        )
    else:
        import platformdirs

        dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
        data = Path(dirs.user_data_dir)
        paths = Paths(
            data=data,
            config=Path(dirs.user_config_dir),
            models=data / "models",
            logs=Path(dirs.user_log_dir),
            cache=Path(dirs.user_cache_dir),
        )
    return paths.ensure()
