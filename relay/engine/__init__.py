"""The engine: decisions, retries, sends to targets, notices, and the worker that runs them."""
