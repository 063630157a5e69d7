"""Comparisons: one prompt to several targets at once, synced follow-ups, blind votes, the
leaderboard and the export; local models beside cloud ones (the cloud stand-in, and
llama-cpp-python's own OpenAI-compatible server with the real model)."""

import asyncio
from dataclasses import replace

import pytest

from desktop.core import secrets
from desktop.core.compare import CompareError, CompareSession, export_markdown, leaderboard
from desktop.core.engine import Engine
from desktop.core.library import LibraryError
from tests.cloud_server import ANSWER, CloudServer, network_address

OPENAI, CLAUDE = "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"


@pytest.fixture
def server(services, monkeypatch):
    s = CloudServer(host=network_address() or "127.0.0.1")
    for name in ("openai", "anthropic"):
        monkeypatch.setenv(secrets.env_name(name), "sk-test")
    services.providers.add("openai", base_url=s.url + "/v1")
    services.providers.add("anthropic", base_url=s.url)
    yield s
    s.stop()


def run(session, prompt):
    async def go():
        return await session.ask(prompt)
    return asyncio.run(go())


def test_a_blind_comparison_hides_names_until_the_vote_and_builds_the_leaderboard(services, server):
    session = CompareSession.create(services, [OPENAI, CLAUDE], blind=True, shuffle=list.reverse)
    assert session.comparison.targets == (CLAUDE, OPENAI)  # shuffled: A is not the first one chosen
    answers = run(session, "What is the capital of France?")
    assert [a.content for a in answers] == ["".join(ANSWER)] * 2
    assert [session.label(i) for i in range(2)] == ["A", "B"]
    assert services.store.comparison(session.comparison.id).title == "What is the capital of France?"

    session.vote("B")
    assert [session.label(i) for i in range(2)] == [CLAUDE, OPENAI]
    board = leaderboard(services.store)
    assert [s.target for s in board] == [OPENAI, CLAUDE]
    assert board[0].rating > 1000 > board[1].rating and (board[0].win_rate, board[1].win_rate) == (1.0, 0.0)
    assert board[0].avg_cost == pytest.approx((21 * 0.15 + len(ANSWER) * 0.60) / 1e6)

    run(session, "And of Italy?")  # a follow-up goes to every column
    for conversation_id in session.comparison.conversations:
        assert [m.role for m in services.store.messages(conversation_id)] == ["user", "assistant"] * 2
    session.vote("tie")
    assert leaderboard(services.store)[0].ties == 1

    text = export_markdown(services.store, session.comparison.id)
    assert "## Prompt 2" in text and "And of Italy?" in text and f"### B: {OPENAI}" in text
    assert "**Vote:** B was better" in text and "**Vote:** a tie" in text
    assert services.store.conversations() == []  # columns are listed with their comparison, not as chats


def test_a_comparison_is_saved_and_reopened(services, server):
    first = CompareSession.create(services, [OPENAI, CLAUDE])
    run(first, "Hello")
    again = CompareSession.open(services, first.comparison.id)
    assert again.turns == 1 and [again.label(i) for i in range(2)] == [OPENAI, CLAUDE]
    services.store.delete_comparison(first.comparison.id)
    assert services.store.comparisons() == [] and services.store.conversations() == []


def test_comparison_mistakes_are_sentences(services, server):
    with pytest.raises(CompareError, match="needs 2 to 4 models; 1 given"):
        CompareSession.create(services, [OPENAI])
    with pytest.raises(LibraryError):
        CompareSession.create(services, [OPENAI, "no-such-model"])
    assert services.store.comparisons() == [] and services.store.conversations() == []  # nothing half-made
    session = CompareSession.create(services, [OPENAI, CLAUDE])
    with pytest.raises(CompareError, match="Ask something first"):
        session.vote("A")
    run(session, "Hi")
    with pytest.raises(CompareError, match="one of A, B, tie or bad; not “C”"):
        session.vote("C")


def test_a_local_model_beside_llama_cpp_pythons_own_server_as_a_cloud(services, model):
    """The stand-in cloud here is llama-cpp-python's OpenAI-compatible server with the real model:
    real streaming, real protocol. With greedy sampling both columns write the same words."""
    services.settings = replace(services.settings, sampling=replace(services.settings.sampling, temperature=0.0,
                                                                    max_tokens=24, seed=1))
    server_engine = Engine(services.paths)

    async def scenario():
        await server_engine.ensure(model, services.settings.load)
        endpoint = server_engine.endpoint()
        services.providers.add("standin", base_url=endpoint.base_url.replace("/hearth/v1", "/v1"), own=True)
        secrets.put("standin", endpoint.api_key)
        session = CompareSession.create(services, [model.id, "standin/smollm2"])
        try:
            return await session.ask("Name a colour."), session
        finally:
            await session.close()
            await server_engine.stop()
            secrets.forget("standin")

    (local, remote), session = asyncio.run(scenario())
    assert local.status == remote.status == "complete" and local.content and local.content == remote.content
    assert (local.provider, remote.provider) == ("local", "standin")
    assert not local.left_the_machine and not remote.left_the_machine  # both on 127.0.0.1
    assert remote.tokens_out and remote.tokens_in  # counted by the server, or estimated and marked
    assert not any(e.is_alive() for e in session.engines)  # the comparison's engine stopped with it
