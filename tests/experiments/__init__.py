"""Tests of the experiments at toy scale."""
