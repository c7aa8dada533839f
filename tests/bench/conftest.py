"""Bench tests use the shared fixtures of ``tests/conftest.py`` (data dir, replay upstream)."""
