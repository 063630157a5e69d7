"""Side-by-side runs: one prompt to 2–4 targets (local models and cloud models in any mix), all
answering at once; follow-ups go to every column. Blind mode hides which column is which until
the user votes; votes build a personal leaderboard (Elo).

Each column is an ordinary conversation with its own chat service (and, for a local model, its
own engine), so an answer in a comparison is saved, counted and costed like any other.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass

from desktop.core.chat import ChatService, LiveAnswer, title_from
from desktop.core.engine import Engine
from desktop.core.errors import HearthError
from desktop.core.store import Comparison, Message, Store, Vote

LETTERS = "ABCD"
NEW_COMPARISON = "New comparison"
MIN_TARGETS, MAX_TARGETS = 2, 4
ELO_START, ELO_K = 1000.0, 32.0


class CompareError(HearthError):
    pass


class CompareSession:
    """A comparison being shown: its columns' chat services, and the engines they started."""

    def __init__(self, services, comparison: Comparison) -> None:
        self.services = services
        self.comparison = comparison
        self.engines: list[Engine] = []
        self.chats: list[ChatService] = []
        for target in comparison.targets:
            if services.providers.target(target) is not None:
                self.chats.append(services.chat_service(services.engine))  # the engine is not used
            else:
                engine = Engine(services.paths)
                self.engines.append(engine)
                self.chats.append(services.chat_service(engine))

    @classmethod
    def create(cls, services, targets: list[str], *, blind: bool = False, title: str = NEW_COMPARISON,
               shuffle: Callable[[list[str]], None] = random.shuffle) -> CompareSession:
        targets = [t.strip() for t in targets if t.strip()]
        if not MIN_TARGETS <= len(targets) <= MAX_TARGETS:
            raise CompareError(f"A comparison needs {MIN_TARGETS} to {MAX_TARGETS} models; {len(targets)} given.")
        resolved = [resolve(services, t) for t in targets]
        if blind:
            shuffle(resolved)  # so A is not always the first one chosen
        settings = services.settings
        conversations = [services.store.create_conversation(
            title=title, system_prompt=settings.system_prompt, sampling=asdict(settings.sampling), model=t).id
            for t in resolved]
        return cls(services, services.store.create_comparison(title, resolved, conversations, blind))

    @classmethod
    def open(cls, services, comparison_id: int) -> CompareSession:
        return cls(services, services.store.comparison(comparison_id))

    # -- asking ---------------------------------------------------------------------------------
    @property
    def turns(self) -> int:
        """How many prompts have been asked."""
        return sum(1 for m in self.services.store.messages(self.comparison.conversations[0]) if m.role == "user")

    @property
    def busy(self) -> bool:
        return any(chat.busy for chat in self.chats)

    async def ask(self, prompt: str, on_text: Callable[[int, LiveAnswer], None] | None = None) -> list[Message]:
        """Send the prompt to every column at once; returns each column's answer, in order.
        `on_text(column, live answer)` is called as each column's answer grows."""
        store = self.services.store
        if self.turns == 0 and self.comparison.title == NEW_COMPARISON:
            self.comparison = store.rename_comparison(self.comparison.id, title_from(prompt))

        def sink(column: int) -> Callable[[LiveAnswer], None] | None:
            return (lambda live: on_text(column, live)) if on_text else None

        answers = await asyncio.gather(*(chat.send(conversation_id, prompt, on_text=sink(i))
                                         for i, (chat, conversation_id)
                                         in enumerate(zip(self.chats, self.comparison.conversations, strict=True))))
        store.touch_comparison(self.comparison.id)
        return list(answers)

    def stop(self) -> None:
        for chat in self.chats:
            chat.stop()

    async def close(self) -> None:
        """Stop what is running and the engines this comparison started."""
        self.stop()
        for engine in self.engines:
            await engine.stop()

    # -- blind votes ----------------------------------------------------------------------------
    @property
    def revealed(self) -> bool:
        return not self.comparison.blind or bool(self.services.store.votes(self.comparison.id))

    def label(self, column: int) -> str:
        """What a column is called: its letter while blind, else its target."""
        return f"{LETTERS[column]}" if not self.revealed else self.comparison.targets[column]

    def vote(self, outcome: str) -> Vote:
        """A, B, C or D (that column was best), "tie", or "bad" (all were bad), on the last prompt."""
        if self.turns == 0:
            raise CompareError("Ask something first: there is nothing to vote on yet.")
        letters = LETTERS[:len(self.comparison.targets)]
        if outcome not in (*letters, "tie", "bad"):
            raise CompareError(f"A vote is one of {', '.join(letters)}, tie or bad; not “{outcome}”.")
        return self.services.store.add_vote(self.comparison.id, self.turns - 1, list(self.comparison.targets),
                                            outcome)


def resolve(services, target: str) -> str:
    """The id a target is stored under: PROVIDER/MODEL for a cloud model (its provider checked),
    else the installed model's id (or the path of a .gguf)."""
    from desktop.core import cloud

    remote = services.providers.target(target)
    if remote is not None:
        cloud.endpoint(remote)  # says now, not in every column, when a key is missing
        return remote.id
    model = services.library.resolve(target)
    return model.path if model.origin == "linked" and not model.sha256 else model.id


@dataclass(frozen=True)
class Standing:
    target: str
    rating: float
    games: int
    wins: int
    ties: int
    losses: int
    all_bad: int
    answers: int  # answers given in comparisons
    avg_cost: float | None
    avg_tokens_per_s: float | None
    avg_ttft_ms: float | None

    @property
    def win_rate(self) -> float:
        return (self.wins + 0.5 * self.ties) / self.games if self.games else 0.0


def leaderboard(store: Store) -> list[Standing]:
    """Every compared target, best first: Elo from the votes in the order they were cast (a best
    column beats each other column; a tie or "all bad" is a draw between each pair), with its
    average cost, speed and time to first words over its answers in comparisons."""
    rating: dict[str, float] = {}
    record: dict[str, list[int]] = {}  # wins, ties, losses, all bad, games
    for vote in store.votes():
        targets = list(vote.targets)
        for t in targets:
            rating.setdefault(t, ELO_START)
            record.setdefault(t, [0, 0, 0, 0, 0])
            record[t][4] += 1
        if vote.outcome in LETTERS:
            winner = targets[LETTERS.index(vote.outcome)]
            pairs = [(winner, t, 1.0) for t in targets if t != winner]
            record[winner][0] += 1
            for t in targets:
                if t != winner:
                    record[t][2] += 1
        else:
            pairs = [(a, b, 0.5) for i, a in enumerate(targets) for b in targets[i + 1:]]
            for t in targets:
                record[t][1 if vote.outcome == "tie" else 3] += 1
        for a, b, score in pairs:
            expected = 1 / (1 + 10 ** ((rating[b] - rating[a]) / 400))
            rating[a] += ELO_K * (score - expected)
            rating[b] -= ELO_K * (score - expected)
    figures = store.comparison_figures()
    standings = []
    for target in set(rating) | set(figures):
        wins, ties, losses, bad, games = record.get(target, [0, 0, 0, 0, 0])
        answers, cost, speed, ttft = figures.get(target, (0, None, None, None))
        standings.append(Standing(target, round(rating.get(target, ELO_START), 1), games, wins, ties + bad, losses,
                                  bad, answers, cost, speed, ttft))
    return sorted(standings, key=lambda s: (-s.rating, -s.games, s.target))


def export_markdown(store: Store, comparison_id: int) -> str:
    """A comparison as Markdown: every prompt, each column's answer and its figures, the votes."""
    from desktop.core.units import human_bytes

    comparison = store.comparison(comparison_id)
    columns = [store.messages(c) for c in comparison.conversations]
    votes = {v.turn: v.outcome for v in store.votes(comparison_id)}
    lines = [f"# {comparison.title}", ""]
    prompts = [m for m in columns[0] if m.role == "user"]
    for turn, prompt in enumerate(prompts):
        lines += [f"## Prompt {turn + 1}", "", prompt.content, ""]
        for i, messages in enumerate(columns):
            answers = [m for m in messages if m.role == "assistant"]
            if turn >= len(answers):
                continue
            a = answers[turn]
            where = "stayed on this machine" if not a.left_the_machine else f"{human_bytes(a.bytes_sent)} sent to {a.processed_on}"
            figures = [f"{a.tokens_per_s:.1f} tokens/s" if a.tokens_per_s else "",
                       f"first words after {a.ttft_ms / 1000:.2f} s" if a.ttft_ms else "",
                       f"{a.tokens_in or 0} in / {a.tokens_out or 0} out" + (" (estimated)" if a.usage_estimated else ""),
                       "cost unknown" if a.cost_unknown else f"${a.cost:.4f}", where]
            lines += [f"### {LETTERS[i]}: {comparison.targets[i]}", "", a.content or f"*({a.status}: {a.error})*", "",
                      "*" + " · ".join(f for f in figures if f) + "*", ""]
        if turn in votes:
            outcome = votes[turn]
            verdict = {"tie": "a tie", "bad": "all bad"}.get(outcome, f"{outcome} was better")
            lines += [f"**Vote:** {verdict}", ""]
    return "\n".join(lines)
