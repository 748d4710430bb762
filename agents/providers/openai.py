"""OpenAI adapter: the Chat Completions API with native function tools, via the official SDK."""

from __future__ import annotations

import json
from typing import Any, assert_never

import openai
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)

from agents.messages import (
    AssistantTurn,
    ChatMessage,
    ModelRequest,
    ModelTurn,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
    UserText,
)
from agents.providers import errors as failures
from agents.providers.remote import RemoteProvider
from agents.providers.retry import (
    DEFAULT_BACKOFF,
    parse_retry_after,
)
from bot.core.backoff import Backoff
from bot.core.errors import ProviderError
from bot.core.redact import Redactor


class OpenAIProvider(RemoteProvider):
    """Chat Completions with function tools; owns an `AsyncOpenAI` client whose retries are off."""

    name = "openai"
    key_setting = "OPENAI_API_KEY"

    def __init__(
        self,
        api_key: str | None,
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        super().__init__(api_key, max_retries=max_retries, backoff=backoff)
        # The SDK's own retry loop is off so that every retry goes through call_with_retries.
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0
        )

    async def _complete_once(self, request: ModelRequest) -> ModelTurn:
        completion = await self._create(request)
        try:
            return _turn(completion)
        except failures.UNREADABLE as exc:
            raise failures.unreadable("openai", exc, self._redactor) from exc

    async def aclose(self) -> None:
        await self._client.close()

    async def _create(self, request: ModelRequest) -> ChatCompletion:
        try:
            return await self._client.chat.completions.create(
                model=request.model,
                messages=_messages(request),
                tools=[_tool(spec) for spec in request.tools] or openai.omit,
                max_completion_tokens=request.max_output_tokens,
                temperature=openai.omit if request.temperature is None else request.temperature,
            )
        except openai.OpenAIError as exc:
            raise _map_error(exc, self._redactor) from _cause(exc)
        except ValueError as exc:  # the SDK parses a 200's body itself: empty or cut short
            raise failures.unreadable("openai", exc, self._redactor) from exc


def _map_error(exc: openai.OpenAIError, redactor: Redactor) -> ProviderError:
    if isinstance(exc, openai.APIStatusError):
        retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
        message = _server_message(exc.body)
        return failures.http_error(
            "openai", exc.status_code, message, redactor, retry_after=retry_after
        )
    if isinstance(exc, openai.APIConnectionError):  # also covers APITimeoutError
        return failures.network_error("openai", exc)
    return failures.invalid("openai", exc, redactor, "error")


def _cause(exc: openai.OpenAIError) -> BaseException | None:
    # An HTTP error's text is the server's body, which can echo credentials back; our message
    # is scrubbed, so the chain stops there. Network errors keep their cause for debugging.
    return None if isinstance(exc, openai.APIStatusError) else exc


def _server_message(body: object) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body.get("type") or "")
    return str(body or "")


def _messages(request: ModelRequest) -> list[ChatCompletionMessageParam]:
    system: list[ChatCompletionMessageParam] = (
        [{"role": "system", "content": request.system}] if request.system else []
    )
    return system + [_message(message) for message in request.messages if not _is_empty(message)]


def _is_empty(message: ChatMessage) -> bool:
    # An assistant turn with nothing in it (the model said nothing) tells the model nothing,
    # and OpenAI-compatible servers differ on whether they accept one.
    return isinstance(message, AssistantTurn) and not message.text and not message.tool_calls


def _message(message: ChatMessage) -> ChatCompletionMessageParam:
    match message:
        case UserText():
            return {"role": "user", "content": message.text}
        case AssistantTurn():
            if not message.tool_calls:
                return {"role": "assistant", "content": message.text}
            return {
                "role": "assistant",
                "content": message.text or None,
                "tool_calls": [_wire_call(call) for call in message.tool_calls],
            }
        case ToolResult():
            return {"role": "tool", "tool_call_id": message.call_id, "content": message.content}
        case _:
            assert_never(message)


def _wire_call(call: ToolCall) -> ChatCompletionMessageFunctionToolCallParam:
    # A call whose arguments did not parse is replayed verbatim, so the model sees its mistake.
    arguments = call.raw_arguments if call.arguments is None else json.dumps(call.arguments)
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def _tool(spec: ToolSpec) -> ChatCompletionFunctionToolParam:
    return {
        "type": "function",
        "function": {
            "name": spec.name,
            "description": spec.description,
            "parameters": spec.parameters,
        },
    }


def _turn(completion: ChatCompletion) -> ModelTurn:
    if not completion.choices:
        raise ValueError("no choices")
    choice = completion.choices[0]
    message = choice.message
    calls = tuple(
        _call(call.id, call.function.name, call.function.arguments)
        for call in message.tool_calls or ()
        if call.type == "function"
    )
    usage = completion.usage
    # No provider_data: Chat Completions keeps no reasoning state to send back on the next call.
    return ModelTurn(
        text=message.content or message.refusal or "",
        tool_calls=calls,
        usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(),
        model=completion.model,
        stop_reason=choice.finish_reason or "",
    )


def _call(call_id: str, name: str, raw: str) -> ToolCall:
    arguments = _parse_arguments(raw)
    return ToolCall(call_id, name, arguments, raw_arguments="" if arguments is not None else raw)


def _parse_arguments(raw: str) -> dict[str, Any] | None:
    if not raw.strip():
        return {}  # some compatible servers send "" for a tool without parameters
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
