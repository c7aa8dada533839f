"""A client that is not installed: skipped locally, a failure where every client must be there.

``.ci/run`` sets ``ADAPTIVE_REQUIRE_CLIENTS=1``: a missing Node directory or Python client then
fails its tests instead of skipping them.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_ENV = "ADAPTIVE_REQUIRE_CLIENTS"
# The directory .ci/run installs the Node clients into (`npm ci` of tests/clients/node).
NODE_DIR_ENV = "ADAPTIVE_CLIENTS_NODE_DIR"


def missing_client(what: str) -> NoReturn:
    """Skip for a missing client, or fail when ``ADAPTIVE_REQUIRE_CLIENTS=1``."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{what} ({REQUIRE_ENV}=1: every client must be installed)")
    pytest.skip(what)
