"""What each API really sends back, built from its documented wire format.

One class per API with the same small surface, so the contract suite can script any of them:
`text`, `tool_calls` and `error` bodies, the route the SDK posts to, and how to build the
adapter against a stub's address.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from agents.providers.anthropic import AnthropicProvider
from agents.providers.base import Provider
from agents.providers.gemini import GeminiProvider
from agents.providers.openai import OpenAIProvider
from bot.core.backoff import Backoff

API_KEY = "sk-test-SECRET0123456789abcdef"
"""Shaped like a real key on purpose: every error test checks that it never leaks."""

FAST = Backoff(initial=0.001, maximum=0.005, jitter=0.0)
INPUT_TOKENS, OUTPUT_TOKENS = 11, 7

Call = tuple[str | None, str, Any]
"""(id, name, arguments) of a scripted tool call; arguments go on the wire as given."""


class Wire(Protocol):
    name: str
    setting: str
    route: str
    model: str

    def build(self, root: str, *, api_key: str | None = API_KEY, **kwargs: Any) -> Provider: ...
    def text(self, text: str) -> dict[str, Any]: ...
    def tool_calls(self, *calls: Call) -> dict[str, Any]: ...
    def error(self, status: int, message: str) -> dict[str, Any]: ...


class OpenAIWire:
    """`POST {base_url}/chat/completions`, base_url ending in /v1 as the SDK's default does."""

    name = "openai"
    setting = "OPENAI_API_KEY"
    route = "/v1/chat/completions"
    model = "gpt-test"

    def build(self, root: str, *, api_key: str | None = API_KEY, **kwargs: Any) -> Provider:
        return OpenAIProvider(api_key, base_url=f"{root}/v1", **kwargs)

    def text(self, text: str) -> dict[str, Any]:
        return self._completion({"role": "assistant", "content": text, "refusal": None}, "stop")

    def tool_calls(self, *calls: Call) -> dict[str, Any]:
        wire_calls = [
            {
                "id": call_id,
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
            for call_id, name, args in calls
        ]
        message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": wire_calls}
        return self._completion(message, "tool_calls")

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = "requests" if status == 429 else "invalid_request_error"
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def _completion(self, message: dict[str, Any], finish_reason: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_760_000_000,
            "model": f"{self.model}-2025-01-01",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": {
                "prompt_tokens": INPUT_TOKENS,
                "completion_tokens": OUTPUT_TOKENS,
                "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
            },
        }


class AnthropicWire:
    """`POST {base_url}/v1/messages`."""

    name = "anthropic"
    setting = "ANTHROPIC_API_KEY"
    route = "/v1/messages"
    model = "claude-test"

    def build(self, root: str, *, api_key: str | None = API_KEY, **kwargs: Any) -> Provider:
        return AnthropicProvider(api_key, base_url=root, **kwargs)

    def text(self, text: str) -> dict[str, Any]:
        return self.message([{"type": "text", "text": text}], "end_turn")

    def tool_calls(self, *calls: Call) -> dict[str, Any]:
        blocks = [
            {"type": "tool_use", "id": call_id, "name": name, "input": args}
            for call_id, name, args in calls
        ]
        return self.message(blocks, "tool_use")

    def error(self, status: int, message: str) -> dict[str, Any]:
        kinds = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}
        kind = kinds.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}

    def message(self, content: list[dict[str, Any]], stop_reason: str) -> dict[str, Any]:
        return {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
        }


class GeminiWire:
    """`POST {base_url}/{api_version}/models/{model}:generateContent`; this SDK defaults to v1."""

    name = "gemini"
    setting = "GEMINI_API_KEY"
    route = "/{version}/models/{model}:generateContent"
    model = "gemini-test"

    def build(self, root: str, *, api_key: str | None = API_KEY, **kwargs: Any) -> Provider:
        return GeminiProvider(api_key, base_url=root, **kwargs)

    def text(self, text: str) -> dict[str, Any]:
        return self.response([{"text": text}])

    def tool_calls(self, *calls: Call) -> dict[str, Any]:
        # Gemini leaves out `id` unless it has one, and `args` for a call without parameters.
        parts = [
            {"functionCall": _present(id=call_id, name=name, args=args)}
            for call_id, name, args in calls
        ]
        return self.response(parts)

    def error(self, status: int, message: str) -> dict[str, Any]:
        codes = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 429: "RESOURCE_EXHAUSTED"}
        return {
            "error": {"code": status, "message": message, "status": codes.get(status, "INTERNAL")}
        }

    def response(
        self, parts: list[dict[str, Any]] | None, finish_reason: str = "STOP", **candidate: Any
    ) -> dict[str, Any]:
        """A generateContent response; `parts=None` leaves out the content, as Gemini does
        when it has nothing to say (a blocked or malformed answer)."""
        content = {"content": {"role": "model", "parts": parts}} if parts is not None else {}
        return {
            "candidates": [
                {**content, "finishReason": finish_reason, "index": 0, **candidate},
            ],
            "usageMetadata": {
                "promptTokenCount": INPUT_TOKENS,
                "candidatesTokenCount": OUTPUT_TOKENS,
                "totalTokenCount": INPUT_TOKENS + OUTPUT_TOKENS,
            },
            "modelVersion": f"{self.model}-001",
            "responseId": "resp-1",
        }


def _present(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


WIRES: dict[str, Wire] = {wire.name: wire for wire in (OpenAIWire(), AnthropicWire(), GeminiWire())}
