"""The agent's tools. Importing this package registers all of them in `REGISTRY`."""

from agents.tools import contact, control, deals, messaging
from agents.tools.base import REGISTRY, Tool

__all__ = ["REGISTRY", "Tool", "contact", "control", "deals", "messaging"]
