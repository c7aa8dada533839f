"""Client authentication and per-client limits (``server.auth``).

``spec`` holds the YAML models, ``keys`` hashing and the client record, ``store`` the shared
counters and run-time keys (Redis or in-process), ``guard`` the per-request checks and the
middleware, ``admin`` the key-management endpoints.
"""
