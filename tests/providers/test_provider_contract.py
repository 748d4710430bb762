"""The contract every network provider keeps, proved against each real SDK and a wire stub."""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from agents.messages import AssistantTurn, ToolCall, ToolResult, Usage, UserText
from agents.providers.retry import RetryableProviderError
from bot.core.backoff import Backoff
from bot.core.errors import ConfigurationError, ProviderError
from tests.providers.scenario import (
    COMPANY_SCHEMA,
    CONTACT_SCHEMA,
    HISTORY,
    LOOKUP_COMPANY,
    LOOKUP_CONTACT,
    MAX_RETRIES,
    SYSTEM,
    Case,
    ask,
)
from tests.providers.stub_server import Received, Reply
from tests.providers.wire import API_KEY, INPUT_TOKENS, OUTPUT_TOKENS, WIRES


async def test_tool_call_is_parsed_with_its_usage(case: Case) -> None:
    call = ("call_1", "lookup_contact", {"email": "ana@example.com"})
    case.server.queue(Reply(body=case.wire.tool_calls(call)))

    turn = await case.provider.complete(ask(case))

    assert turn.tool_calls == (ToolCall("call_1", "lookup_contact", {"email": "ana@example.com"}),)
    assert turn.usage == Usage(INPUT_TOKENS, OUTPUT_TOKENS)
    assert turn.text == ""
    case.server.assert_complete()


async def test_final_text_answer_is_parsed(case: Case) -> None:
    case.server.queue(Reply(body=case.wire.text("Happy to help! Which day suits you?")))

    turn = await case.provider.complete(ask(case))

    assert turn.text == "Happy to help! Which day suits you?"
    assert turn.tool_calls == ()
    assert turn.stop_reason
    assert turn.model.startswith(case.wire.model)


async def test_rate_limit_is_retried_when_the_server_says_so(case: Case) -> None:
    # A backoff of a minute: finishing at once proves the retry waited for Retry-After instead.
    slow = case.wire.build(
        case.server.base_url, max_retries=1, backoff=Backoff(initial=60.0, maximum=60.0)
    )
    case.server.queue(
        Reply(429, case.wire.error(429, "Rate limit reached"), {"retry-after": "0"}),
        Reply(body=case.wire.text("Back again.")),
    )
    try:
        async with asyncio.timeout(3):
            turn = await slow.complete(ask(case))
    finally:
        await slow.aclose()

    assert turn.text == "Back again."
    assert len(case.server.received) == 2


async def test_rate_limit_error_carries_retry_after(case: Case) -> None:
    once = case.wire.build(case.server.base_url, max_retries=0)
    case.server.queue(Reply(429, case.wire.error(429, "Rate limit reached"), {"retry-after": "7"}))
    try:
        with pytest.raises(RetryableProviderError) as caught:
            await once.complete(ask(case))
    finally:
        await once.aclose()

    assert caught.value.retry_after == 7.0


async def test_server_errors_are_retried_until_one_succeeds(case: Case) -> None:
    failure = Reply(500, case.wire.error(500, "Internal error"))
    case.server.queue(failure, failure, Reply(body=case.wire.text("Recovered.")))

    turn = await case.provider.complete(ask(case))

    assert turn.text == "Recovered."
    assert len(case.server.received) == 3


async def test_persistent_server_error_gives_up_after_max_retries(case: Case) -> None:
    case.server.fallback = Reply(503, case.wire.error(503, "Overloaded"))

    with pytest.raises(ProviderError) as caught:
        await case.provider.complete(ask(case))

    assert caught.value.retryable
    assert "503" in str(caught.value)
    assert len(case.server.received) == MAX_RETRIES + 1


async def test_bad_request_fails_at_once(case: Case) -> None:
    case.server.queue(Reply(400, case.wire.error(400, "tools.0.name: invalid")))

    with pytest.raises(ProviderError) as caught:
        await case.provider.complete(ask(case))

    assert not caught.value.retryable
    assert "400" in str(caught.value)
    assert len(case.server.received) == 1


async def test_unreachable_server_is_retried_then_reported(case: Case) -> None:
    await case.server.close()  # nothing listens on the port any more

    with pytest.raises(ProviderError) as caught:
        await case.provider.complete(ask(case))

    assert caught.value.retryable


async def test_timeout_is_a_retryable_error(case: Case) -> None:
    impatient = case.wire.build(case.server.base_url, timeout=0.1, max_retries=0)
    case.server.queue(Reply(body=case.wire.text("Too late."), delay=2.0))
    try:
        with pytest.raises(ProviderError) as caught:
            await impatient.complete(ask(case))
    finally:
        await impatient.aclose()

    assert caught.value.retryable


@pytest.mark.parametrize(
    ("case", "sent", "raw"),
    [
        ("openai", "{not json", "{not json"),
        ("openai", "[1, 2]", "[1, 2]"),  # JSON, but not an object
        ("anthropic", "oops", '"oops"'),
        ("anthropic", [1, 2], "[1, 2]"),
    ],
    indirect=["case"],
)
async def test_arguments_that_are_not_an_object_are_kept_raw(
    case: Case, sent: Any, raw: str
) -> None:
    # Gemini is absent: its wire cannot carry such arguments (see test_gemini_wire.py).
    case.server.queue(Reply(body=case.wire.tool_calls(("call_9", "lookup_contact", sent))))

    turn = await case.provider.complete(ask(case))

    assert turn.tool_calls == (ToolCall("call_9", "lookup_contact", None, raw_arguments=raw),)


def _openai_shape(request: Received) -> None:
    body = request.body
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert body["model"] == "gpt-test"
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Hi, I'd like a demo."},
        {"role": "user", "content": "My email is ana@example.com"},
        {
            "role": "assistant",
            "content": "Let me look you up.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "lookup_contact",
                        "arguments": json.dumps({"email": "ana@example.com"}),
                    },
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {
                        "name": "lookup_company",
                        "arguments": json.dumps({"domain": "example.com"}),
                    },
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"found": true, "name": "Ana"}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "no company with that domain"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": spec.name,
                "description": spec.description,
                "parameters": spec.parameters,
            },
        }
        for spec in (LOOKUP_CONTACT, LOOKUP_COMPANY)
    ]
    assert body["max_completion_tokens"] == 256
    assert body["temperature"] == 0.2


def _anthropic_shape(request: Received) -> None:
    body = request.body
    # SDK 2.x sends the API key as a bearer token, no longer in x-api-key.
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["anthropic-version"] == "2026-10-21"
    assert body["model"] == "claude-test"
    assert body["system"] == SYSTEM
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hi, I'd like a demo."},
                {"type": "text", "text": "My email is ana@example.com"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look you up."},
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "lookup_contact",
                    "input": {"email": "ana@example.com"},
                },
                {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "lookup_company",
                    "input": {"domain": "example.com"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "call_1",
                    "content": '{"found": true, "name": "Ana"}',
                    "is_error": False,
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "call_2",
                    "content": "no company with that domain",
                    "is_error": True,
                },
            ],
        },
    ]
    assert body["tools"] == [
        {"name": spec.name, "description": spec.description, "input_schema": spec.parameters}
        for spec in (LOOKUP_CONTACT, LOOKUP_COMPANY)
    ]
    assert body["max_tokens"] == 256
    assert "temperature" not in body  # the API version this SDK speaks rejects it


def _gemini_shape(request: Received) -> None:
    body = request.body
    assert request.path == "/v1/models/gemini-test:generateContent"
    assert request.headers["x-goog-api-key"] == API_KEY
    assert body["systemInstruction"]["parts"] == [{"text": SYSTEM}]
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [{"text": "Hi, I'd like a demo."}, {"text": "My email is ana@example.com"}],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Let me look you up."},
                {
                    "functionCall": {
                        "id": "call_1",
                        "name": "lookup_contact",
                        "args": {"email": "ana@example.com"},
                    },
                    "thoughtSignature": "skip_thought_signature_validator",
                },
                {
                    "functionCall": {
                        "id": "call_2",
                        "name": "lookup_company",
                        "args": {"domain": "example.com"},
                    }
                },
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": "call_1",
                        "name": "lookup_contact",
                        "response": {"output": '{"found": true, "name": "Ana"}'},
                    }
                },
                {
                    "functionResponse": {
                        "id": "call_2",
                        "name": "lookup_company",
                        "response": {"error": "no company with that domain"},
                    }
                },
            ],
        },
    ]
    [tool] = body["tools"]
    declarations = tool["functionDeclarations"]
    assert [(d["name"], d["description"]) for d in declarations] == [
        (spec.name, spec.description) for spec in (LOOKUP_CONTACT, LOOKUP_COMPANY)
    ]
    # Protobuf JSON takes a field's proto name as well as its camelCase one; this SDK sends
    # the schema under the proto name, so accept either.
    schemas = [d.get("parametersJsonSchema", d.get("parameters_json_schema")) for d in declarations]
    assert schemas == [CONTACT_SCHEMA, COMPANY_SCHEMA]
    assert body["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 256}


WIRE_SHAPES: dict[str, Callable[[Received], None]] = {
    "openai": _openai_shape,
    "anthropic": _anthropic_shape,
    "gemini": _gemini_shape,
}


async def test_history_is_sent_in_the_wire_shape(case: Case) -> None:
    case.server.queue(Reply(body=case.wire.text("Ana, you're all set.")))

    await case.provider.complete(ask(case, *HISTORY))

    [request] = case.server.received
    WIRE_SHAPES[case.wire.name](request)


REPLAYED_ARGUMENTS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    # OpenAI carries arguments as text, so the model's own text goes back verbatim.
    "openai": (lambda body: body["messages"][2]["tool_calls"][0]["function"]["arguments"], "{x"),
    # The others need an object; the tool result (the loop's error message) says what was wrong.
    "anthropic": (lambda body: body["messages"][1]["content"][0]["input"], {}),
    "gemini": (lambda body: body["contents"][1]["parts"][0]["functionCall"]["args"], {}),
}


async def test_call_with_unparsed_arguments_can_be_replayed(case: Case) -> None:
    botched = AssistantTurn(tool_calls=(ToolCall("call_1", "lookup_contact", None, "{x"),))
    error = ToolResult("call_1", "lookup_contact", "arguments are not a JSON object", True)
    case.server.queue(Reply(body=case.wire.text("Sorry about that.")))

    await case.provider.complete(ask(case, UserText("Hi"), botched, error))

    extract, expected = REPLAYED_ARGUMENTS[case.wire.name]
    assert extract(case.server.received[0].body) == expected


SENT_ROLES: dict[str, Callable[[Any], list[str]]] = {
    "openai": lambda body: [message["role"] for message in body["messages"]],
    "anthropic": lambda body: [message["role"] for message in body["messages"]],
    "gemini": lambda body: [content["role"] for content in body["contents"]],
}


async def test_empty_assistant_turn_is_left_out(case: Case) -> None:
    # The loop records one when the model answered with nothing, then nudges it.
    silent = (UserText("Hi"), AssistantTurn(), UserText("Please answer the contact."))
    case.server.queue(Reply(body=case.wire.text("Hello!")))

    await case.provider.complete(ask(case, *silent))

    roles = SENT_ROLES[case.wire.name](case.server.received[0].body)
    assert "assistant" not in roles
    assert "model" not in roles


@pytest.mark.parametrize("api_key", [None, ""])
@pytest.mark.parametrize("name", list(WIRES))
async def test_missing_api_key_is_a_configuration_error(name: str, api_key: str | None) -> None:
    wire = WIRES[name]

    with pytest.raises(ConfigurationError, match=wire.setting):
        wire.build("http://127.0.0.1:9", api_key=api_key)


async def test_api_key_never_appears_in_provider_errors(case: Case) -> None:
    for status in (400, 401, 403, 429, 500):
        # Servers do echo credentials back, e.g. "Incorrect API key provided: sk-...".
        echo = case.wire.error(status, f"Incorrect API key provided: {API_KEY}")
        case.server.fallback = Reply(status, echo, {"retry-after": "0"})

        with pytest.raises(ProviderError) as caught:
            await case.provider.complete(ask(case))

        assert API_KEY not in "".join(traceback.format_exception(caught.value))
        assert str(status) in str(caught.value)
        if status in (401, 403):
            assert case.wire.setting in str(caught.value)
