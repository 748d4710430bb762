"""The agent's tools. Importing this package registers all of them in `REGISTRY`."""

from agents.tools import contact, control, deals, kb, meetings, messaging
from agents.tools.base import REGISTRY, Tool

__all__ = ["REGISTRY", "Tool", "contact", "control", "deals", "kb", "meetings", "messaging"]
