"""The arq worker: batch delivery jobs, the per-worker rate limit, and the reconciler."""
