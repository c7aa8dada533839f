"""Experiments that informed the shipped design; not installed, never imported when serving."""
