"""crmbot application layer: settings, store, CLI and app wiring."""

__version__ = "0.1.0"
