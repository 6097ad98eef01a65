"""edgekit's version, in a module of its own: modules that record it import this, never the root package."""

__version__ = "0.1.0"
