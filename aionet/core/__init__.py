"""Core lifecycle: listeners, connection manager, server, handler API, registry, logging."""
