"""What an answer cost: API prices per million tokens (resources/pricing.json, dated, with the
user's own edits on top) and, for local answers, an optional electricity estimate."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from desktop.core.files import write_json
from desktop.core.paths import resources_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Price:
    input_per_m: float  # dollars per million prompt tokens
    output_per_m: float  # dollars per million answer tokens

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_m + tokens_out * self.output_per_m) / 1_000_000


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("price table %s is unreadable (%s); ignoring it", path, exc)
        return {}


def _prices(raw: object) -> dict[str, Price]:
    table: dict[str, Price] = {}
    if isinstance(raw, dict):
        for name, pair in raw.items():
            if (isinstance(pair, list) and len(pair) == 2
                    and all(isinstance(v, (int, float)) and v >= 0 for v in pair)):
                table[str(name).lower()] = Price(float(pair[0]), float(pair[1]))
    return table


class Pricing:
    def __init__(self, user_file: Path, builtin: Path | None = None) -> None:
        self.user_file = user_file
        self.builtin = builtin or resources_dir() / "pricing.json"

    @property
    def as_of(self) -> str:
        return str(_read(self.builtin).get("as_of", ""))

    def builtin_table(self) -> dict[str, Price]:
        return _prices(_read(self.builtin).get("models"))

    def user_table(self) -> dict[str, Price]:
        return _prices(_read(self.user_file).get("models"))

    def table(self) -> dict[str, Price]:
        return {**self.builtin_table(), **self.user_table()}

    def price(self, model: str) -> Price | None:
        """The price for a model name: exact, else the longest `prefix*` entry that matches. A
        name with a vendor in front (`openai/gpt-4o`, as routers write it) is also tried without."""
        table = self.table()
        names = [model.lower()]
        if "/" in model:
            names.append(model.rsplit("/", 1)[-1].lower())
        for name in names:
            if name in table:
                return table[name]
            prefixes = [k for k in table if k.endswith("*") and name.startswith(k[:-1])]
            if prefixes:
                return table[max(prefixes, key=len)]
        return None

    def cost(self, model: str, tokens_in: int | None, tokens_out: int | None) -> float | None:
        """Dollars for one answer; None when the model has no price here."""
        price = self.price(model)
        if price is None:
            return None
        return price.cost(tokens_in or 0, tokens_out or 0)

    def set(self, model: str, input_per_m: float, output_per_m: float) -> None:
        self._save_user({**self.user_table(), model.lower(): Price(input_per_m, output_per_m)})

    def reset(self, model: str) -> None:
        table = self.user_table()
        table.pop(model.lower(), None)
        self._save_user(table)

    def _save_user(self, table: dict[str, Price]) -> None:
        data = {"models": {k: [p.input_per_m, p.output_per_m] for k, p in sorted(table.items())}}
        write_json(self.user_file, data)


def electricity_cost(seconds: float, watts: float, price_per_kwh: float) -> float:
    """What running the computer at `watts` for `seconds` costs at `price_per_kwh`."""
    return watts * seconds / 3_600_000 * price_per_kwh
