"""The in-app tests' two API processes (session-scoped: they start once)."""

from tests.subscribers.inapp_support import two_apis

__all__ = ["two_apis"]
