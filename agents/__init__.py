"""Agent engine: definitions, router, loop, tools, guardrails and model providers."""
