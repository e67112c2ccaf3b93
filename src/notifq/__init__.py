"""notifq: a self-hosted notification campaign engine (PostgreSQL + arq)."""

__version__ = "0.1.0"
