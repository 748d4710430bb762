"""A run answers exactly the messages it was handed: the same set it sees and marks handled."""

from __future__ import annotations

from agents.messages import AssistantTurn, ModelRequest, UserText
from bot.store.inbox import pending_messages
from bot.store.models import Message, OutboxItem
from tests.support.harness import Harness
from tests.support.models import FunctionModel, turn


def _user_texts(request: ModelRequest) -> str:
    return "\n".join(m.text for m in request.messages if isinstance(m, UserText))


async def _pending(h: Harness, conversation_id: int) -> list[Message]:
    async with h.db.transaction() as session:
        return await pending_messages(session, conversation_id)


async def test_a_message_recorded_as_a_run_starts_is_answered_by_the_next_run_only(
    harness: Harness,
) -> None:
    model = FunctionModel(lambda request: turn(f"reply {len(model.requests)}"))
    harness.use_model(model)
    conversation_id = await harness.receive("first question")
    taken = await _pending(harness, conversation_id)
    await harness.receive("second question")  # lands between the pending read and the run

    await harness.app.runner.handle_inbound(conversation_id, taken)

    (first,) = model.requests
    assert "first question" in _user_texts(first)
    assert "second question" not in _user_texts(first)  # it was not handed to this run
    (left,) = await _pending(harness, conversation_id)
    assert left.text == "second question"

    await harness.app.runner.handle_inbound(conversation_id, [left])
    await harness.app.flush_outbox()
    second = model.requests[1]
    assert "second question" in _user_texts(second)
    assert await _pending(harness, conversation_id) == []
    replies = await harness.rows(OutboxItem, OutboxItem.channel == "console")
    assert [r.text for r in replies] == ["reply 1", "reply 2"]  # one reply per message


async def test_the_next_run_sees_the_reply_queued_after_its_message_and_answers_last(
    harness: Harness,
) -> None:
    """Found by the several-workers harness: two messages at once, answered one by one. The
    first run's reply is newer than the second message, and the second run, whose history
    stopped at its watermark, did not see it: it asked the same question again."""
    model = FunctionModel(lambda request: turn(f"reply {len(model.requests)}"))
    harness.use_model(model)
    conversation_id = await harness.receive("first question")
    taken = await _pending(harness, conversation_id)
    await harness.receive("second question")
    await harness.app.runner.handle_inbound(conversation_id, taken)

    await harness.app.runner.handle_inbound(
        conversation_id, await _pending(harness, conversation_id)
    )

    shown = [
        ("user", m.text) if isinstance(m, UserText) else ("assistant", m.text)
        for m in model.requests[1].messages
        if isinstance(m, UserText | AssistantTurn) and m.text
    ]
    assert shown[-3:] == [
        ("user", "first question"),
        ("assistant", "reply 1"),
        ("user", "second question"),  # the message the run answers is the last turn
    ]


async def test_a_trigger_word_in_a_message_that_arrives_mid_run_is_never_missed(
    harness: Harness,
) -> None:
    model = FunctionModel(lambda request: turn("Happy to help with that."))
    harness.use_model(model)
    conversation_id = await harness.receive("what does the pro plan include?")
    taken = await _pending(harness, conversation_id)
    await harness.receive("actually I want a refund")

    await harness.app.runner.handle_inbound(conversation_id, taken)
    assert "refund" not in _user_texts(model.requests[0])  # the model never saw it unchecked

    outcome = await harness.app.runner.handle_inbound(
        conversation_id, await _pending(harness, conversation_id)
    )
    assert outcome.status == "handed_off"
    assert "refund" in outcome.reason
    assert len(model.requests) == 1  # the trigger was caught before any model call
