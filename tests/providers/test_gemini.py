"""What only the Gemini wire does: missing call ids, no raw arguments, retry hints in the body,
thought signatures sent back."""

from __future__ import annotations

import pytest

from agents.messages import AssistantTurn, ToolCall, ToolResult, Usage, UserText
from agents.providers.retry import RetryableProviderError
from bot.core.errors import ProviderError
from tests.providers.scenario import Case, ask, stored
from tests.providers.stub_server import Reply
from tests.providers.wire import INPUT_TOKENS, OUTPUT_TOKENS, GeminiWire

pytestmark = pytest.mark.parametrize("case", ["gemini"], indirect=True)
WIRE = GeminiWire()


async def test_calls_without_ids_get_ids_unique_to_the_response(case: Case) -> None:
    case.server.queue(
        Reply(
            body=WIRE.tool_calls(
                (None, "lookup_contact", {"email": "ana@example.com"}),
                (None, "lookup_company", {"domain": "example.com"}),
            )
        )
    )

    turn = await case.provider.complete(ask(case))

    assert [call.id for call in turn.tool_calls] == ["call_resp-1_0", "call_resp-1_1"]


async def test_call_without_args_has_empty_arguments(case: Case) -> None:
    case.server.queue(Reply(body=WIRE.tool_calls(("c1", "list_stages", None))))

    turn = await case.provider.complete(ask(case))

    assert turn.tool_calls == (ToolCall("c1", "list_stages", {}),)


async def test_args_that_are_not_an_object_are_a_provider_error(case: Case) -> None:
    # The wire types `args` as a Struct and the SDK validates the response against that, so
    # unlike OpenAI and Anthropic there is no raw text to hand back to the loop.
    case.server.queue(Reply(body=WIRE.tool_calls(("c1", "lookup_contact", "oops"))))

    with pytest.raises(ProviderError) as caught:
        await case.provider.complete(ask(case))

    assert not caught.value.retryable
    assert len(case.server.received) == 1


async def test_malformed_function_call_is_an_empty_turn_that_says_so(case: Case) -> None:
    # How Gemini reports a call it could not form; finishMessage holds the model's attempt.
    attempt = "Malformed function call: print(default_api.lookup_contact(email=ana@))"
    body = WIRE.response(None, "MALFORMED_FUNCTION_CALL", finishMessage=attempt)
    case.server.queue(Reply(body=body))

    turn = await case.provider.complete(ask(case))

    assert (turn.text, turn.tool_calls) == ("", ())
    assert turn.stop_reason == "MALFORMED_FUNCTION_CALL"


async def test_thoughts_are_not_in_the_reply_but_count_as_output(case: Case) -> None:
    body = WIRE.response([{"text": "The lead wants a demo...", "thought": True}, {"text": "Hi!"}])
    body["usageMetadata"]["thoughtsTokenCount"] = 5
    case.server.queue(Reply(body=body))

    turn = await case.provider.complete(ask(case))

    assert turn.text == "Hi!"
    assert turn.usage == Usage(INPUT_TOKENS, OUTPUT_TOKENS + 5)


async def test_blocked_prompt_reports_the_block_reason(case: Case) -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "responseId": "resp-2"}
    case.server.queue(Reply(body=body))

    turn = await case.provider.complete(ask(case))

    assert (turn.text, turn.tool_calls, turn.stop_reason) == ("", (), "SAFETY")


async def test_retry_delay_in_the_error_body_is_honoured(case: Case) -> None:
    # Gemini sends no Retry-After header; it puts a google.rpc.RetryInfo in the error body.
    body = WIRE.error(429, "Quota exceeded for generate_content_requests")
    body["error"]["details"] = [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}
    ]
    once = WIRE.build(case.server.base_url, max_retries=0)
    case.server.queue(Reply(429, body))
    try:
        with pytest.raises(RetryableProviderError) as caught:
            await once.complete(ask(case))
    finally:
        await once.aclose()

    assert caught.value.retry_after == 17.0


SIGNATURE = "CiQBcsjafDgvKq3XzNnQ0mPTvS1hLk0Z7wUeRr2cYbW4oqHtJfM="
"""Opaque to us; Gemini checks it on the first call of the turn being continued."""


async def test_signed_call_goes_back_with_its_signature(case: Case) -> None:
    # Gemini signs only the first of parallel calls; the others must go back unsigned.
    parts = [
        {"text": "Let me check."},
        {
            "functionCall": {"name": "lookup_contact", "args": {"email": "a@x.com"}},
            "thoughtSignature": SIGNATURE,
        },
        {"functionCall": {"name": "lookup_company", "args": {"domain": "x.com"}}},
    ]
    case.server.queue(Reply(body=WIRE.response(parts)), Reply(body=WIRE.text("Hi Ana!")))
    turn = await case.provider.complete(ask(case))
    results = [ToolResult(call.id, call.name, "{}") for call in turn.tool_calls]

    await case.provider.complete(ask(case, UserText("Hi"), stored(turn), *results))

    model = case.server.received[1].body["contents"][1]
    assert model["role"] == "model"
    assert [part.get("thoughtSignature") for part in model["parts"]] == [None, SIGNATURE, None]


async def test_turn_the_loop_made_up_gets_the_placeholder_signature(case: Case) -> None:
    # A plain-text answer is replayed as the send_message call it became, without state.
    reply = ToolCall("reply-1", "send_message", {"text": "Hi Ana!"})
    made_up = AssistantTurn(tool_calls=(reply,))
    case.server.queue(Reply(body=WIRE.text("Done.")))

    await case.provider.complete(
        ask(case, UserText("Hi"), made_up, ToolResult("reply-1", "send_message", "sent"))
    )

    [part] = case.server.received[0].body["contents"][1]["parts"]
    assert part["thoughtSignature"] == "skip_thought_signature_validator"


async def test_unsigned_answer_has_no_provider_data(case: Case) -> None:
    case.server.queue(Reply(body=WIRE.tool_calls(("c1", "lookup_contact", {"email": "a@x.com"}))))

    turn = await case.provider.complete(ask(case))

    assert turn.provider_data is None
