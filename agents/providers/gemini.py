"""Gemini adapter: generateContent with function declarations, via the google-genai SDK."""

from __future__ import annotations

import base64
import functools
import json
import ssl
from typing import Any, Literal, assert_never

import httpx2
from google import genai
from google.genai import errors, types

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

Role = Literal["user", "model"]

# Gemini 3 rejects a replayed function call that lacks the thought signature it came with
# (https://ai.google.dev/gemini-api/docs/thought-signatures). _turn keeps the real ones in
# `provider_data`; a turn the loop made up itself has none, so it gets the placeholder Google
# documents for that case. The SDK base64-encodes bytes, so decoding here puts the literal
# placeholder on the wire.
_SKIP_SIGNATURE = base64.urlsafe_b64decode("skip_thought_signature_validator")

# The key of our state in `provider_data`, so that no other adapter's state is mistaken for it.
_DATA_KEY = "gemini"


class GeminiProvider(RemoteProvider):
    """generateContent with function calling; owns a `genai.Client` whose retries are off."""

    name = "gemini"
    key_setting = "GEMINI_API_KEY"

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
        # Our own httpx2 client: otherwise the SDK switches to aiohttp whenever that happens to
        # be installed, which changes the errors it raises and adds a hidden reconnect retry.
        self._http = httpx2.AsyncClient(timeout=timeout, verify=_tls_context())
        self._client = genai.Client(
            vertexai=False,  # never switched to Vertex AI by GOOGLE_GENAI_USE_VERTEXAI
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=base_url,
                timeout=int(timeout * 1000),
                retry_options=types.HttpRetryOptions(attempts=1),
                httpx_async_client=self._http,
            ),
        )

    async def _complete_once(self, request: ModelRequest) -> ModelTurn:
        response = await self._generate(request)
        if not response.candidates and not _blocked(response):
            # The SDK reads an empty body as an empty response; Gemini itself always sends a
            # candidate, or the reason the prompt was blocked.
            raise failures.unreadable("gemini", "no candidates", self._redactor)
        try:
            return _turn(response, request.model)
        except failures.UNREADABLE as exc:
            raise failures.unreadable("gemini", exc, self._redactor) from exc

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        self._client.close()  # the SDK builds a sync transport too, even if never used
        await self._http.aclose()  # the SDK leaves a client it was given open

    async def _generate(self, request: ModelRequest) -> types.GenerateContentResponse:
        try:
            return await self._client.aio.models.generate_content(
                model=request.model, contents=_contents(request.messages), config=_config(request)
            )
        except (errors.APIError, httpx2.TransportError, ValueError) as exc:
            raise _map_error(exc, self._redactor) from _cause(exc)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # One per process: building a context loads the whole trust store, tens of milliseconds.
    return httpx2.create_ssl_context()


def _map_error(exc: Exception, redactor: Redactor) -> ProviderError:
    if isinstance(exc, errors.APIError):
        message = f"{exc.status or ''} {exc.message or ''}".strip()
        return failures.http_error(
            "gemini",
            exc.code,
            message,
            redactor,
            retry_after=_retry_after(exc) if exc.code == 429 else None,
            bad_key="api key" in message.lower(),
        )
    if isinstance(exc, httpx2.TransportError):  # also covers timeouts
        return failures.network_error("gemini", exc)
    if isinstance(exc, json.JSONDecodeError):  # a 200 whose body is cut short or not JSON
        return failures.unreadable("gemini", exc, redactor)
    # The SDK raises ValueError (pydantic's among them) for a request or response it cannot map.
    return failures.invalid("gemini", exc, redactor, "request or response invalid")


def _cause(exc: Exception) -> BaseException | None:
    # An HTTP error's text is the server's body, which can echo credentials back; our message
    # is scrubbed, so the chain stops there. Other errors keep their cause for debugging.
    return None if isinstance(exc, errors.APIError) else exc


def _retry_after(exc: errors.APIError) -> float | None:
    headers: Any = getattr(exc.response, "headers", None) or {}
    if (seconds := parse_retry_after(headers.get("retry-after"))) is not None:
        return seconds
    # Gemini usually says when to come back in the body, as a google.rpc.RetryInfo ("17s").
    error = exc.details.get("error", exc.details) if isinstance(exc.details, dict) else {}
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            return parse_retry_after(str(detail.get("retryDelay", "")).removesuffix("s"))
    return None


def _config(request: ModelRequest) -> types.GenerateContentConfig:
    tools: list[types.ToolUnion] = [
        types.Tool(function_declarations=[_declaration(spec) for spec in request.tools])
    ]
    return types.GenerateContentConfig(
        system_instruction=request.system or None,
        tools=tools if request.tools else None,
        temperature=request.temperature,
        max_output_tokens=request.max_output_tokens,
        # Our loop runs the tools; the SDK must only report the calls.
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )


def _declaration(spec: ToolSpec) -> types.FunctionDeclaration:
    # parameters_json_schema takes plain JSON Schema, so no conversion to Gemini's Schema type.
    return types.FunctionDeclaration(
        name=spec.name, description=spec.description, parameters_json_schema=spec.parameters
    )


def _contents(messages: tuple[ChatMessage, ...]) -> list[types.Content]:
    """Convert the history, merging neighbours of the same role.

    Gemini wants the responses to all of one turn's function calls in a single content.
    """
    turns: list[tuple[Role, list[types.Part]]] = []
    for message in messages:
        role, parts = _parts(message)
        if not parts:
            continue  # the API rejects a content without parts
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(parts)
        else:
            turns.append((role, parts))
    return [types.Content(role=role, parts=parts) for role, parts in turns]


def _parts(message: ChatMessage) -> tuple[Role, list[types.Part]]:
    match message:
        case UserText():
            return "user", [types.Part(text=message.text)] if message.text else []
        case AssistantTurn():
            text = [types.Part(text=message.text)] if message.text else []
            return "model", text + _function_calls(message)
        case ToolResult():
            key = "error" if message.is_error else "output"  # the keys the API documents
            response = types.FunctionResponse(
                id=message.call_id, name=message.name, response={key: message.content}
            )
            return "user", [types.Part(function_response=response)]
        case _:
            assert_never(message)


def _function_calls(turn: AssistantTurn) -> list[types.Part]:
    # Each call goes back with the signature it came with, if any: Gemini signs only the first
    # call of a turn. A call whose arguments did not parse goes back with none; its result
    # (the loop's error message) says why.
    signatures = _signatures(turn.provider_data) or _placeholder(turn.tool_calls)
    return [
        types.Part(
            function_call=types.FunctionCall(id=call.id, name=call.name, args=call.arguments or {}),
            thought_signature=signatures.get(call.id),
        )
        for call in turn.tool_calls
    ]


def _placeholder(calls: tuple[ToolCall, ...]) -> dict[str, bytes]:
    # A turn the loop made up (a plain-text answer replayed as send_message) has no real
    # signature; its first call gets the placeholder, in the shape Gemini itself signs.
    return {calls[0].id: _SKIP_SIGNATURE} if calls else {}


def _signatures(provider_data: dict[str, Any] | None) -> dict[str, bytes]:
    """The real signatures _turn kept, by call id; in `provider_data` they are base64 text, as
    on the wire, so that the audit log can store them as JSON."""
    stored = (provider_data or {}).get(_DATA_KEY, {}).get("call_signatures", {})
    return {call_id: base64.urlsafe_b64decode(value) for call_id, value in stored.items()}


def _turn(response: types.GenerateContentResponse, model: str) -> ModelTurn:
    candidate = response.candidates[0] if response.candidates else None
    content = candidate.content if candidate else None
    parts = (content.parts or []) if content else []
    text = "".join(part.text for part in parts if part.text and not part.thought)
    call_parts = [(part, part.function_call) for part in parts if part.function_call is not None]
    calls = tuple(_call(call, response.response_id, i) for i, (_, call) in enumerate(call_parts))
    # Thought parts are not kept: we do not ask for them (include_thoughts), and Gemini checks
    # signatures only on function calls.
    signatures = {
        call.id: base64.urlsafe_b64encode(part.thought_signature).decode("ascii")
        for call, (part, _) in zip(calls, call_parts, strict=True)
        if part.thought_signature
    }
    return ModelTurn(
        text=text,
        tool_calls=calls,
        usage=_usage(response.usage_metadata),
        model=response.model_version or model,
        stop_reason=_stop_reason(response, candidate),
        provider_data={_DATA_KEY: {"call_signatures": signatures}} if signatures else None,
    )


def _call(call: types.FunctionCall, response_id: str | None, index: int) -> ToolCall:
    # Gemini may omit ids. Ours go back paired with their results, so they only need to be
    # unique within the conversation; the response id makes them so.
    call_id = call.id or (f"call_{response_id}_{index}" if response_id else f"call_{index}")
    # The SDK validates `args` as an object, so there is no raw text to keep; no args means none.
    return ToolCall(call_id, call.name or "", call.args or {})


def _usage(meta: types.GenerateContentResponseUsageMetadata | None) -> Usage:
    if meta is None:
        return Usage()
    # Thinking tokens are billed as output, as they are in the other providers' counts.
    output = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
    return Usage(meta.prompt_token_count or 0, output)


def _blocked(response: types.GenerateContentResponse) -> bool:
    feedback = response.prompt_feedback
    return feedback is not None and feedback.block_reason is not None


def _stop_reason(response: types.GenerateContentResponse, candidate: types.Candidate | None) -> str:
    # MALFORMED_FUNCTION_CALL arrives here with no parts: Gemini's way of saying the model
    # botched a call, since its wire cannot carry arguments that are not an object.
    if candidate is not None and candidate.finish_reason is not None:
        return str(candidate.finish_reason.value)
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        return str(feedback.block_reason.value)
    return ""
