"""The replay upstream: an OpenAI-compatible server answering with real recorded model outputs.

Used by the benchmark, the demo and the tests as a real upstream on a free port.
"""
