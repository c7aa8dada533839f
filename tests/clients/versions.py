"""The pinned client versions (``tests/clients/versions.toml``) and the files derived from them.

``python -m tests.clients.versions`` rewrites ``tests/clients/node/package.json``'s dependencies
from the pins and prints the ``clients`` extra that ``pyproject.toml`` must carry.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VERSIONS = HERE / "versions.toml"
PACKAGE_JSON = HERE / "node" / "package.json"
PACKAGE_LOCK = HERE / "node" / "package-lock.json"
PYPROJECT = ROOT / "pyproject.toml"


def pins() -> dict[str, dict[str, str]]:
    """``{"python": {name: version}, "node": {name: version}}`` from versions.toml."""
    data = tomllib.loads(VERSIONS.read_text())
    return {side: {str(k): str(v) for k, v in data[side].items()} for side in ("python", "node")}


def clients_extra(python: dict[str, str]) -> list[str]:
    """The ``clients`` extra's requirements: each Python client at its pinned version."""
    return [f"{name}=={version}" for name, version in python.items()]


def pyproject_clients_extra() -> list[str]:
    """The ``clients`` extra as pyproject.toml declares it."""
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    return [str(r) for r in extras.get("clients", [])]


def package_json_dependencies() -> dict[str, str]:
    """package.json's ``dependencies``."""
    return dict(json.loads(PACKAGE_JSON.read_text())["dependencies"])


def locked_versions() -> dict[str, str]:
    """The version package-lock.json installs of each direct dependency."""
    lock = json.loads(PACKAGE_LOCK.read_text())
    packages = lock["packages"]
    return {
        name: str(packages[f"node_modules/{name}"]["version"])
        for name in packages[""].get("dependencies", {})
    }


def write_package_json(node: dict[str, str]) -> None:
    """Set package.json's dependencies to exactly the pins (sorted, as npm writes them)."""
    data = json.loads(PACKAGE_JSON.read_text())
    data["dependencies"] = dict(sorted(node.items()))
    PACKAGE_JSON.write_text(json.dumps(data, indent=2) + "\n")


def main() -> None:
    """Rewrite package.json from the pins; print the pyproject extra."""
    current = pins()
    write_package_json(current["node"])
    print(f"{PACKAGE_JSON.relative_to(ROOT)}: dependencies = {json.dumps(current['node'])}")
    print("pyproject.toml [project.optional-dependencies]:")
    print(f"clients = {json.dumps(clients_extra(current['python']))}")


if __name__ == "__main__":
    main()
