"""Replay-upstream tests use the shared fixtures of ``tests/conftest.py`` (data dir, server)."""
