"""The HTTP API (Starlette). Only this package knows about HTTP."""
