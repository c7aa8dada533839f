"""Tests of the repository tools."""
