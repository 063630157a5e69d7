"""A conversation with a model, local or cloud: save the user's words first, stream the answer
into the database as it arrives, and end every answer marked complete, stopped or error, with
its figures (tokens, speed, cost, bytes sent and where the words were processed).

Used by the command line, the window and comparisons, so all behave the same.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

from desktop.core import cloud
from desktop.core.cloud import CloudTarget, Providers
from desktop.core.docs.context import NOTHING_FOUND_NOTICE, ConversationDocuments
from desktop.core.docs.context import plan as plan_documents
from desktop.core.engine import Engine
from desktop.core.errors import HearthError
from desktop.core.library import Library, LibraryError
from desktop.core.pricing import Pricing, electricity_cost
from desktop.core.providers import (
    ConnectionLost,
    ContextOverflow,
    Endpoint,
    Usage,
    estimate_tokens,
    open_client,
)
from desktop.core.reasoning import ReasoningParser
from desktop.core.settings import Sampling, Settings
from desktop.core.store import (
    HEARTBEAT_S,
    THIS_MACHINE,
    Conversation,
    DatabaseBusy,
    Message,
    ModelRecord,
    Store,
    StoreError,
)
from desktop.core.templates import normalize_turns

log = logging.getLogger(__name__)

SAVE_INTERVAL_S = 0.5  # an answer in progress is written at least this often
# How long a save that meets a lock held by another program is tried again (with a growing pause,
# the loop free meanwhile) before the user reads a sentence. An answer's periodic saves are not
# retried: the next one writes all of it.
LOCK_WAIT_S = 10.0
LOCK_PAUSE_S = (0.05, 1.0)  # the first pause, doubled up to the last
LOCK_TELL_S = 1.0  # a lock that lasts this long is said, once
DATABASE_WAIT = "Another program is using Hearth's database; {what} will be saved as soon as it is free."
T = TypeVar("T")
PER_MESSAGE_TOKENS = 8  # the chat template's tokens around each message, a generous guess
TITLE_LENGTH = 48
NEW_CHAT = "New chat"
RESTART_HINT = "Your conversation is kept; your next message starts the model again."


class MessageNotSaved(HearthError):
    """The user's message could not be written, so it was not sent either."""


class DocumentsNeedConsent(HearthError):
    """Documents (issue 18): the chat's model is a cloud model and the user has not yet allowed
    this conversation to send its documents' passages there; nothing was sent."""


# Documents (issue 18): a cloud model's context is not known here; its documents' block is kept
# within this many (estimated) tokens: whole files up to it, else passages.
CLOUD_DOCUMENT_TOKENS = 16_000


def title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


@dataclass
class LiveAnswer:
    """What has arrived so far of the answer being generated: its thinking (a reasoning
    model's, kept apart) and the answer proper, split by a ReasoningParser as it streams."""

    message_id: int
    replaces: int | None = None  # the answer it is written again in place of (Regenerate)
    parser: ReasoningParser = field(default_factory=ReasoningParser)
    started: float = 0.0
    first_token: float | None = None
    last_token: float | None = None
    thinking_from: float | None = None  # the first thought
    answering_from: float | None = None  # the first word of the answer proper
    usage: Usage | None = None  # as the endpoint counted it, when it did
    finish_reason: str | None = None
    bytes_sent: int = 0  # to hosts other than this machine
    ended: float | None = None  # when the answer ended, however it did
    # Documents (issue 18): the numbered sources the prompt gave, as saved in Message.sources.
    sources: list[dict] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The answer proper, without its thinking."""
        return self.parser.answer

    @property
    def thinking(self) -> str:
        return self.parser.thinking

    @property
    def phase(self) -> str:
        """"waiting", "thinking" or "answering" (see ReasoningParser.phase)."""
        return self.parser.phase

    @property
    def thinking_ms(self) -> float | None:
        """How long the model thought: to its first answer word; while it still thinks, to now
        (or to when the answer ended: Stop, an error, the length limit)."""
        if self.thinking_from is None:
            return None
        end = self.answering_from or self.ended or time.monotonic()
        return max(0.0, end - self.thinking_from) * 1000

    def mark(self, now: float) -> None:
        """Note when thinking and answering began (called after each feed). Words first taken for
        the answer may turn out to have been thinking (a `</think>` with no `<think>`): the
        thinking then began with the first word, and the answer has not begun yet."""
        if self.parser.thought and self.thinking_from is None:
            self.thinking_from = self.first_token or now
        if self.parser.phase == "answering":
            if self.answering_from is None:
                self.answering_from = now
        else:
            self.answering_from = None

    def stats(self, tokens_out: int | None) -> dict[str, float | int | str | None]:
        ttft = (self.first_token - self.started) * 1000 if self.first_token else None
        rate = None
        if (tokens_out and tokens_out > 1 and self.first_token and self.last_token
                and self.last_token > self.first_token):
            rate = (tokens_out - 1) / (self.last_token - self.first_token)
        tokens_in = self.usage.prompt_tokens if self.usage else None
        return {"tokens_out": tokens_out, "tokens_in": tokens_in, "ttft_ms": ttft, "tokens_per_s": rate,
                "bytes_sent": self.bytes_sent, "thinking_ms": self.thinking_ms if self.parser.thought else None,
                "stop_reason": "length" if self.finish_reason == "length" else ""}


Target = ModelRecord | CloudTarget


class ChatService:
    def __init__(self, store: Store, library: Library, engine: Engine,
                 settings: Callable[[], Settings], providers: Providers | None = None,
                 pricing: Pricing | None = None) -> None:
        self.store = store
        self.library = library
        self.engine = engine
        self.settings = settings
        self.providers = providers
        self.pricing = pricing
        self.on_wait: Callable[[float, str], None] | None = None  # a cloud retry's wait, for the window
        # A sentence about the prompt the user should read once: the model has no chat template,
        # its template failed, … (the window shows it in its banner, the CLI on stderr).
        self.on_notice: Callable[[str], None] | None = None
        # The sentence that a save waits for another program's lock (DATABASE_WAIT), when the
        # listener shows it its own way (the window's banner); else it goes to on_notice.
        self.on_database_wait: Callable[[str], None] | None = None
        self.trimmed_messages = 0  # older messages left out of the last request to fit the context
        self._inner: asyncio.Future[None] | None = None
        self._live: LiveAnswer | None = None
        self._stop_requested = False
        self._token_counts: dict[tuple[str, str], int] = {}  # (model path, text): tokens
        # -- documents (issue 18) --
        # The messages of the last request sent to a model, as sent (what the model read).
        self.last_request: list[dict[str, str]] = []
        # Opens the DocumentIndex the chat searches (documents.db beside hearth.db unless set).
        self.open_index: Callable[[], object] | None = None
        self._index: object | None = None
        # Finds the embedding model for hybrid search (docs.embedder.find_embedder over the app's
        # services); None or returning None: keywords alone, said once.
        self.embedder_finder: Callable[[], object | None] | None = None
        self._embedder: object | None = None  # found once; its engine child stops in close_documents
        self._documents_told: set[tuple[int, str]] = set()  # (conversation, notice) already said

    # -- conversations --------------------------------------------------------------------------
    def new_conversation(self, model_id: str = "") -> Conversation:
        s = self.settings()
        return self.store.create_conversation(
            title=NEW_CHAT, system_prompt=s.system_prompt,
            sampling=asdict(s.sampling), model=model_id or s.last_model,
        )

    def model_for(self, conversation: Conversation) -> Target:
        """The conversation's model (local or cloud); else the last local one used; else any
        installed chat model. A conversation never moves to a cloud model it was not set to, and
        never chats with an embedding model (model_kinds): one named is passed over. Raises
        LibraryError when no chat model is installed."""
        if conversation.model and self.providers is not None:
            target = self.providers.target(conversation.model)
            if target is not None:
                return target
        for ref in (conversation.model, self.settings().last_model):
            if ref:
                try:
                    model = self.library.resolve(ref)
                except LibraryError:
                    continue
                if not model.for_embeddings:
                    return model
        models = self.library.chat_models()
        if not models:
            if self.library.models():
                raise LibraryError("Only embedding models are installed, and they cannot chat. Download a chat "
                                   "model under Models › Discover, or import one.")
            raise LibraryError("No model is installed yet. Import a .gguf file to start chatting.")
        return models[0]

    # -- documents in the chat (issue 18) --------------------------------------------------------
    def attach(self, conversation_id: int, paths: list[str]) -> list[str]:
        """Attach files to a conversation: each is checked by reading its first section (extract),
        so a file Hearth cannot read raises DocumentError with its sentence and nothing of this
        call is attached. Returns sentences for files it will not use (not a file, or a kind it
        does not read); the others are kept as absolute paths."""
        from desktop.core.docs import extract

        usable: list[str] = []
        refused: list[str] = []
        for raw in paths:
            path = Path(raw).expanduser().resolve()
            if path.is_dir():
                refused.append(f"“{path.name}” is a folder: add it to a collection (Documents, or hearth docs add) "
                               "and use that collection in the chat.")
                continue
            if not path.is_file():
                refused.append(f"“{path.name}” is not a file Hearth can find ({path}).")
                continue
            if path.suffix.lower() not in extract.KINDS:
                refused.append(f"“{path.name}” is not a kind of file Hearth reads ({extract.READS}).")
                continue
            sections = extract.sections(path)
            try:
                next(sections, None)  # raises DocumentError for a locked, scanned, binary or damaged file
            finally:
                close = getattr(sections, "close", None)
                if close is not None:
                    close()
            usable.append(str(path))
        if usable:
            self.store.add_conversation_documents(conversation_id, "file", usable)
        return refused

    def detach(self, conversation_id: int, path: str) -> None:
        """Stop using an attached file in the conversation (the file itself is untouched)."""
        self.store.remove_conversation_documents(conversation_id, "file", [str(Path(path).expanduser().resolve()),
                                                                          str(path)])

    def use_collections(self, conversation_id: int, names: list[str]) -> None:
        """The collections the conversation searches, from now on exactly these (an empty list:
        none). DocumentError when one does not exist."""
        if names:
            known = {c.name for c in self.document_index().collections()}
            for name in names:
                if name not in known:
                    from desktop.core.docs import DocumentError

                    raise DocumentError(f"There is no collection named “{name}”.")
        self.store.remove_conversation_documents(conversation_id, "collection")
        self.store.add_conversation_documents(conversation_id, "collection", list(dict.fromkeys(names)))

    def documents(self, conversation_id: int) -> ConversationDocuments:
        """The files and collections the conversation uses."""
        rows = self.store.conversation_documents(conversation_id)
        return ConversationDocuments(files=tuple(v for k, v in rows if k == "file"),
                                     collections=tuple(v for k, v in rows if k == "collection"))

    def documents_consent_needed(self, conversation_id: int) -> bool:
        """True when the conversation has documents, its model is a cloud model, and the user has
        not allowed this conversation to send passages to that provider: nothing is sent until
        `grant_documents_consent`."""
        if not self.documents(conversation_id):
            return False
        target = self._cloud_target(self.store.conversation(conversation_id))
        if target is None or target.provider.on_this_machine:  # a server on this computer: nothing leaves it
            return False
        return target.provider.name not in self.store.documents_consent(conversation_id)

    def grant_documents_consent(self, conversation_id: int) -> None:
        """Allow this conversation to send its documents' passages to its cloud model's provider
        (asked again if the conversation moves to another provider)."""
        target = self._cloud_target(self.store.conversation(conversation_id))
        if target is not None:
            self.store.grant_documents_consent(conversation_id, target.provider.name)

    async def close_documents(self) -> None:
        """Stop the embedding model's engine child the documents' search started, if any (the
        command line after its answer, the window when it closes)."""
        embedder, self._embedder = self._embedder, None
        close = getattr(embedder, "close", None)
        if close is not None:
            await close()

    def close_documents_now(self) -> None:
        """Stop the embedding model's engine child without an event loop (the window closing)."""
        embedder, self._embedder = self._embedder, None
        engine = getattr(embedder, "engine", None)
        if engine is not None:
            engine.stop_now()

    def _cloud_target(self, conversation: Conversation) -> CloudTarget | None:
        if conversation.model and self.providers is not None:
            return self.providers.target(conversation.model)
        return None

    def document_index(self):
        """The DocumentIndex the chat searches, opened once (documents.db beside hearth.db unless
        `open_index` says); on opening, the own collections of deleted conversations are removed.
        Raises IndexUnavailable with a sentence when it cannot be opened."""
        if self._index is None:
            if self.open_index is not None:
                self._index = self.open_index()
            else:
                from desktop.core.docs.index import DocumentIndex

                self._index = DocumentIndex(self.store.path.parent / "documents.db")
            self._forget_deleted_chats(self._index)
        return self._index

    def _forget_deleted_chats(self, index) -> None:
        """The own collections of conversations deleted since (their attached files' passages)
        go from the index, whoever deleted the conversation."""
        from desktop.core.docs.context import conversation_of

        for collection in index.collections():
            owner = conversation_of(collection.name)
            if owner is None:
                continue
            try:
                self.store.conversation(owner)
            except KeyError:
                index.remove(collection.name)

    async def _documents_block(self, conversation: Conversation, question: str, room: int, count,
                               answer: LiveAnswer) -> str:
        """The documents' system block for `question` (docs.context.plan), its sources kept on
        the live answer, its notices said once per conversation."""
        if self._embedder is None and self.embedder_finder is not None:
            self._embedder = self.embedder_finder()
        planned = await plan_documents(question, self.documents(conversation.id), room=room, count=count,
                                       index_of=self.document_index, embedder=self._embedder,
                                       conversation_id=conversation.id)
        answer.sources = [s.as_dict() for s in planned.sources]
        for notice in planned.notices:
            if notice == NOTHING_FOUND_NOTICE or (conversation.id, notice) not in self._documents_told:
                self._documents_told.add((conversation.id, notice))
                self._tell(notice)
        return planned.block

    async def _with_documents(self, conversation: Conversation, history: list[dict[str, str]],
                              answer: LiveAnswer, sampling: Sampling, remote: bool) -> list[dict[str, str]]:
        """The history with the documents' block joined to its system message (one system block
        before the conversation); for a local model, older turns left out again to fit."""
        turns = [m for m in history if m["role"] != "system"]
        system = [m for m in history if m["role"] == "system"]
        question = next((m["content"] for m in reversed(turns) if m["role"] == "user"), "")
        if remote:
            async def count(text: str) -> int:
                return estimate_tokens(text)
            room = CLOUD_DOCUMENT_TOKENS
        else:
            count = self._tokens
            n_ctx = self.engine.n_ctx
            budget = n_ctx - min(sampling.max_tokens, n_ctx // 2)
            fixed = sum([await self._tokens(m["content"]) for m in system]) + await self._tokens(question)
            room = budget - fixed
        block = await self._documents_block(conversation, question, room, count, answer)
        head = "\n\n".join([*(m["content"] for m in system), block])
        messages = [{"role": "system", "content": head}]
        if remote:
            return messages + turns
        used = await self._tokens(head)
        kept: list[dict[str, str]] = []
        for message in reversed(turns):
            cost = await self._tokens(message["content"])
            if used + cost > budget and kept:
                break
            kept.append(message)
            used += cost
        self.trimmed_messages = len(turns) - len(kept)
        return normalize_turns(messages + list(reversed(kept)))

    def live_answer(self) -> LiveAnswer | None:
        """The answer being generated right now, if any."""
        return self._live

    @property
    def busy(self) -> bool:
        return self._inner is not None and not self._inner.done()

    def stop(self) -> None:
        """Stop the answer being generated, at once; what arrived so far is kept."""
        if self.busy:
            self._stop_requested = True
            assert self._inner is not None
            self._inner.cancel()

    # -- asking ---------------------------------------------------------------------------------
    async def send(self, conversation_id: int, text: str,
                   on_text: Callable[[LiveAnswer], None] | None = None) -> Message:
        """Save the user's message, then generate and save the answer. Returns the answer.
        `on_text` is called with the live answer each time more of it arrives."""
        conversation = self.store.conversation(conversation_id)
        try:
            await self._save(lambda: self.store.add_message(conversation_id, "user", text), "your message")
        except StoreError as exc:
            raise MessageNotSaved(f"{exc} Your message was not sent; it is still in the box.") from exc
        if conversation.title == NEW_CHAT:
            conversation = await self._save(
                lambda: self.store.update_conversation(conversation_id, title=title_from(text)), "the chat's title")
        return await self._answer(conversation, on_text)

    async def regenerate(self, conversation_id: int,
                         on_text: Callable[[LiveAnswer], None] | None = None) -> Message:
        """Write the last answer again; returns the new one. The last answer stays the one shown
        and sent until the new one is complete (an app killed halfway, an engine that fails, a
        refused key or Stop leave it so, the new one kept aside as superseded); it is then kept
        as an earlier version. An answer that was not complete itself gives way to any new one."""
        conversation = self.store.conversation(conversation_id)
        last = self.store.messages(conversation_id, last=1)
        replaced = last[0] if last and last[0].role == "assistant" else None
        return await self._answer(conversation, on_text, replaced)

    async def _settle(self, answer: Message, replaced: Message | None) -> Message:
        """Which of a regenerated answer and the one it replaces is current from now on."""
        if replaced is not None and (answer.status == "complete" or replaced.status != "complete"):
            await self._save(lambda: self.store.make_current(answer.id), "the new answer")
            return self.store.message(answer.id)
        return answer

    async def save(self, write: Callable[[], T], what: str) -> T:
        """Run `write` (a store call) as answers are saved: a lock held by another program is
        waited out for up to LOCK_WAIT_S, said once after LOCK_TELL_S through `on_notice`.
        `what` names the thing for the sentences ("your message"). Raises StoreError with a
        sentence when the lock outlasts the wait."""
        return await self._save(write, what)

    async def _save(self, write: Callable[[], T], what: str) -> T:
        """Run a write; one that meets a lock held by another program is tried again, with a
        growing pause in which the window stays free, until LOCK_WAIT_S have passed."""
        started = time.monotonic()
        deadline = started + LOCK_WAIT_S
        pause = LOCK_PAUSE_S[0]
        told = False
        while True:
            try:
                return write()
            except DatabaseBusy as exc:
                if not told and time.monotonic() - started >= LOCK_TELL_S:
                    told = True  # said once: the reader knows why the answer waits
                    said = DATABASE_WAIT.format(what=what)
                    if self.on_database_wait is not None:
                        self.on_database_wait(said)
                    else:
                        self._tell(said)
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"Another program kept Hearth's database ({self.store.path}) locked for "
                        f"{LOCK_WAIT_S:.0f} s, so {what} could not be saved. Close that program and "
                        "try again.") from exc
                log.info("the database is locked; saving %s again in %.2f s", what, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, LOCK_PAUSE_S[1])

    async def _answer(self, conversation: Conversation, on_text: Callable[[LiveAnswer], None] | None,
                      replaced: Message | None = None) -> Message:
        settings = self.settings()
        sampling = Sampling.from_dict(conversation.sampling)
        version = {"replaces": replaced.id, "superseded": True} if replaced is not None else {}
        try:
            target = self.model_for(conversation)
        except HearthError as exc:
            reason = str(exc)
            failed = await self._save(lambda: self.store.add_message(
                conversation.id, "assistant", "", status="error", error=reason, **version), "the answer")
            return await self._settle(failed, replaced)
        remote = isinstance(target, CloudTarget)
        if remote:
            row = {"model": target.model, "provider": target.provider.name,
                   "processed_on": target.provider.processed_on}
        else:
            row = {"model": target.name, "provider": "local", "processed_on": THIS_MACHINE}
        answer_row = await self._save(lambda: self.store.add_message(
            conversation.id, "assistant", "", status="streaming", **row, **version), "the answer")
        answer = LiveAnswer(answer_row.id, replaces=answer_row.replaces)
        leave_out = {answer_row.id} | ({replaced.id} if replaced is not None else set())
        self._live = answer
        self._stop_requested = False
        try:
            if remote:
                # The key comes from the system keyring, whose first use takes ~0.2 s (import and
                # backend detection): not on the window's thread.
                if self.documents_consent_needed(conversation.id):  # documents (issue 18): nothing sent
                    raise DocumentsNeedConsent(
                        f"This chat has documents and its model runs at {target.provider.label}: Hearth sends "
                        "their passages there only once you allow it for this chat.")
                endpoint = await asyncio.to_thread(cloud.endpoint, target)
                history = self._all_turns(conversation, leave_out)
                self.trimmed_messages = 0
            else:
                await self.engine.ensure(target, settings.load)
                self._tell(self.engine.take_notice())
                if conversation.model != target.id:
                    await self._save(lambda: self.store.update_conversation(conversation.id, model=target.id),
                                     "the chat's model")
                try:
                    self.store.touch_model(target.id)
                except DatabaseBusy:  # only orders the model list: not worth waiting for
                    log.info("the database is locked; the model's last use is not recorded")
                endpoint = self.engine.endpoint()
                history = await self._history(conversation, leave_out, sampling)
            if self.documents(conversation.id):  # documents (issue 18): one system block of numbered sources
                history = await self._with_documents(conversation, history, answer, sampling, remote)
            self.last_request = [dict(m) for m in history]
            self._inner = asyncio.ensure_future(self._stream(answer, history, sampling, on_text, endpoint))
            await self._inner
            status, error = "complete", ""
        except asyncio.CancelledError:
            if not self._stop_requested:  # the app itself is closing: save, then let it close
                try:
                    self.store.update_message(answer.message_id, **self._ending(answer, "stopped", "", None, row))
                except StoreError:  # locked: the next start marks it stopped, with what was saved
                    log.warning("the database is locked; an answer cut off by closing was not saved")
                raise
            status, error = "stopped", ""
        except ConnectionLost as exc:
            death = None if remote else await self.engine.confirm_death()
            if death is not None:
                status, error = "error", f"{death} {RESTART_HINT}"
            else:
                status, error = "error", str(exc)
        except HearthError as exc:
            status, error = "error", str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must still end the answer, with its words kept
            log.exception("an answer failed unexpectedly")
            status, error = "error", (f"Something went wrong inside Hearth while this answer was written "
                                      f"({type(exc).__name__}); what arrived is kept. Try again.")
        finally:
            self._inner = None
            self._live = None
        ending = self._ending(answer, status, error, await self._tokens_out(answer, remote), row)
        await self._save(lambda: self.store.update_message(answer.message_id, **ending), "this answer")
        return await self._settle(self.store.message(answer.message_id), replaced)

    def _tell(self, notice: str) -> None:
        if notice and self.on_notice is not None:
            self.on_notice(notice)

    async def _tokens_out(self, answer: LiveAnswer, remote: bool = False) -> int | None:
        """The answer's length in tokens: as the endpoint counted it, else (stopped early) as the
        local model's tokenizer counts the text that arrived, or estimated from its length."""
        if answer.usage:
            return answer.usage.completion_tokens
        written = answer.thinking + answer.text  # thinking is generated too
        if remote and written:
            answer.usage = Usage(0, estimate_tokens(written), estimated=True)
            return answer.usage.completion_tokens
        if not written or not self.engine.is_alive():
            return None
        try:
            return await self.engine.count_tokens(written)
        except HearthError:
            raise
        except Exception:  # noqa: BLE001 - a figure under the answer is not worth failing it for
            log.warning("could not count the tokens of a stopped answer", exc_info=True)
            return None

    def _ending(self, answer: LiveAnswer, status: str, error: str, tokens_out: int | None,
                row: dict[str, str]) -> dict:
        """What is saved of an answer when it ends: its text, how it ended and its figures."""
        answer.parser.finish()  # a tag held back at the very end is text after all
        answer.mark(answer.last_token or time.monotonic())
        answer.ended = answer.ended or time.monotonic()
        stats = answer.stats(tokens_out)
        stats["usage_estimated"] = bool(answer.usage and answer.usage.estimated)
        cost = self._cost(answer, row, stats)
        stats["cost"], stats["cost_unknown"] = cost or 0.0, cost is None
        return {"content": answer.text, "thinking": answer.thinking, "status": status, "error": error,
                "sources": answer.sources, **stats}

    def _cost(self, answer: LiveAnswer, row: dict[str, str], stats: dict) -> float | None:
        """API fees for a cloud answer (None: no price known for the model); for a local one, the
        electricity when the user set a wattage, else 0."""
        if row["provider"] != "local":
            if not stats["tokens_in"] and not stats["tokens_out"]:
                return 0.0
            return self.pricing.cost(row["model"], stats["tokens_in"], stats["tokens_out"]) if self.pricing else None
        s = self.settings()
        if s.electricity_watts and s.electricity_price_kwh and answer.started and answer.last_token:
            return electricity_cost(answer.last_token - answer.started, s.electricity_watts, s.electricity_price_kwh)
        return 0.0

    async def _stream(self, answer: LiveAnswer, history: list[dict[str, str]], sampling: Sampling,
                      on_text: Callable[[LiveAnswer], None] | None, endpoint: Endpoint) -> None:
        client = open_client(endpoint)
        client.on_wait = self.on_wait
        heartbeat = asyncio.ensure_future(self._heartbeat(answer.message_id))
        deltas = client.stream(history, sampling)
        told = 0
        try:
            answer.started = last_save = time.monotonic()
            save_every = SAVE_INTERVAL_S
            async for delta in deltas:
                while told < len(client.notices):
                    self._tell(client.notices[told])
                    told += 1
                now = time.monotonic()
                if answer.first_token is None:
                    answer.first_token = now
                answer.last_token = now
                answer.parser.feed(delta.text, delta.reasoning)
                answer.mark(now)
                if on_text:
                    on_text(answer)
                if now - last_save >= save_every:
                    last_save = now
                    try:
                        self.store.update_message(answer.message_id, content=answer.text, thinking=answer.thinking)
                        save_every = SAVE_INTERVAL_S
                    except DatabaseBusy:  # locked by another program: all of it goes in a later save
                        save_every = min(save_every * 2, LOCK_PAUSE_S[1] * 4)
            answer.usage = client.usage
        finally:
            answer.ended = time.monotonic()
            answer.finish_reason = client.finish_reason
            answer.bytes_sent = client.bytes_sent  # sent, whatever became of the answer
            heartbeat.cancel()
            # Closed in this task however the loop ended (a save that failed, a stop): left to
            # the garbage collector, its HTTP stream would be closed outside any task.
            await deltas.aclose()
            await client.aclose()

    async def _heartbeat(self, message_id: int) -> None:
        """Keep the answer's row fresh while no token arrives (a long prompt being read), so no
        other Hearth process takes it for one cut off by a crash."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                self.store.update_message(message_id)
            except DatabaseBusy:  # its writer is known to be alive anyway (store.writer_alive)
                continue

    # -- the context window ---------------------------------------------------------------------
    def _all_turns(self, conversation: Conversation, leave_out: set[int]) -> list[dict[str, str]]:
        """The system prompt and every turn so far (cloud models' contexts are far larger)."""
        system, turns = self._turns(conversation, leave_out)
        return normalize_turns(system + turns)

    def _turns(self, conversation: Conversation,
               leave_out: set[int]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """The turns shown in the chat (one version of each answer), without `leave_out`: the
        answer being written and the one it is written again in place of."""
        turns = [
            {"role": m.role, "content": m.content}
            for m in self.store.messages(conversation.id)
            if m.id not in leave_out and m.content and not (m.role == "assistant" and m.status == "error")
        ]
        system = [{"role": "system", "content": conversation.system_prompt}] if conversation.system_prompt.strip() else []
        return system, turns

    async def _history(self, conversation: Conversation, leave_out: set[int],
                       sampling: Sampling) -> list[dict[str, str]]:
        """The messages to send: the system prompt and as many recent turns as fit the context."""
        system, turns = self._turns(conversation, leave_out)
        n_ctx = self.engine.n_ctx
        budget = n_ctx - min(sampling.max_tokens, n_ctx // 2)
        rough = sum(len(m["content"]) // 3 + PER_MESSAGE_TOKENS for m in system + turns)
        self.trimmed_messages = 0
        if rough <= budget:  # a cheap over-estimate says it fits: no need to count
            return normalize_turns(system + turns)
        used = sum([await self._tokens(m["content"]) for m in system])
        kept: list[dict[str, str]] = []
        for message in reversed(turns):
            cost = await self._tokens(message["content"])
            if used + cost > budget:
                break
            kept.append(message)
            used += cost
        if not kept:
            raise ContextOverflow(
                f"Your message is too long for this model's context of {n_ctx} tokens, with room "
                "left for an answer. Shorten it, or raise the context length in Settings."
            )
        self.trimmed_messages = len(turns) - len(kept)
        return normalize_turns(system + list(reversed(kept)))

    async def _tokens(self, text: str) -> int:
        key = (self.engine.model.path if self.engine.model else "", text)
        if key not in self._token_counts:
            self._token_counts[key] = await self.engine.count_tokens(text) + PER_MESSAGE_TOKENS
        return self._token_counts[key]
