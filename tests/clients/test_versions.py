"""The client pins: one source (versions.toml), the files derived from it, what is installed."""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path

import pytest

from tests.clients.required import NODE_DIR_ENV, REQUIRE_ENV
from tests.clients.versions import (
    clients_extra,
    locked_versions,
    package_json_dependencies,
    pins,
    pyproject_clients_extra,
)


def test_package_json_and_its_lock_pin_the_node_clients_of_versions_toml() -> None:
    node = pins()["node"]
    assert package_json_dependencies() == node  # exact versions, no ranges
    assert locked_versions() == node


def test_the_clients_extra_pins_the_python_clients_of_versions_toml() -> None:
    assert pyproject_clients_extra() == clients_extra(pins()["python"])


def test_litellm_is_never_a_malicious_release() -> None:
    assert pins()["python"]["litellm"] not in ("1.82.7", "1.82.8")


@pytest.mark.skipif(os.environ.get(REQUIRE_ENV) != "1", reason=f"only with {REQUIRE_ENV}=1")
def test_the_installed_clients_are_the_pinned_ones() -> None:
    """CI runs the tests against exactly the pinned clients."""
    wanted = pins()
    installed = {name: metadata.version(name) for name in wanted["python"]}
    assert installed == wanted["python"]
    modules = Path(os.environ[NODE_DIR_ENV]) / "node_modules"
    node = {
        name: json.loads((modules / name / "package.json").read_text())["version"]
        for name in wanted["node"]
    }
    assert node == wanted["node"]


def test_the_tested_clients_table_shows_the_pinned_versions() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    table = docs.split("## Tested clients", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("|")}
    wanted = pins()
    python, node = wanted["python"], wanted["node"]
    assert python["openai"] in rows["`openai` (Python)"]
    assert node["openai"] in rows["`openai` (Node)"]
    assert (
        f"{node['ai']} + {node['@ai-sdk/openai']}" in rows["Vercel AI SDK `ai` + `@ai-sdk/openai`"]
    )
    assert python["litellm"] in rows["`litellm`"]
    assert python["langchain-openai"] in rows["`langchain-openai`"]
