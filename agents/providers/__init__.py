"""Model providers behind one interface; `build_provider` picks one from settings."""

from agents.providers.base import Provider
from agents.providers.registry import build_provider

__all__ = ["Provider", "build_provider"]
