"""The TypeScript client package (clients/typescript) is one a front-end can depend on:
its version follows the API's, it ships compiled code and types only, and nothing the
e2e checks need is among its runtime dependencies. `make e2e` builds, packs and installs
it (see the Makefile); this checks what that relies on without Node."""

from __future__ import annotations

import json
import tomllib
from typing import Any

from app.config import Settings
from app.main import create_app
from tests.support.harness import ROOT

PACKAGE = ROOT / "clients" / "typescript" / "package.json"
E2E_ONLY = {"playwright-core", "swagger-ui-dist", "@types/node", "@redocly/cli"}


def _package() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PACKAGE.read_text(encoding="utf-8"))
    return data


def test_the_package_version_follows_the_api() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    api_version = create_app(Settings(_env_file=None)).openapi()["info"]["version"]
    snapshot = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    versions = {
        "pyproject.toml": pyproject["project"]["version"],
        "the app's info.version": api_version,
        "docs/openapi.json": snapshot["info"]["version"],
        "clients/typescript/package.json": _package()["version"],
    }
    assert len(set(versions.values())) == 1, versions


def test_the_package_ships_compiled_code_and_types() -> None:
    package = _package()
    assert not package.get("private"), "a front-end cannot depend on a private package"
    assert package["name"] == "@ocupredict/client"
    assert package["files"] == ["dist", "README.md"]
    entry = package["exports"]["."]
    assert entry == {"types": "./dist/index.d.ts", "import": "./dist/index.js"}
    assert package["types"] == "./dist/index.d.ts" and package["main"] == "./dist/index.js"
    assert (PACKAGE.parent / "README.md").exists()


def test_no_e2e_tool_is_a_runtime_dependency() -> None:
    package = _package()
    runtime = set(package.get("dependencies", {})) | set(package.get("peerDependencies", {}))
    assert not runtime & E2E_ONLY, runtime
    assert not set(package.get("devDependencies", {})) & {"playwright-core", "swagger-ui-dist"}
    consumer = json.loads((ROOT / "e2e" / "node" / "package.json").read_text(encoding="utf-8"))
    assert consumer["private"] is True
    assert "@ocupredict/client" not in consumer.get("devDependencies", {}), (
        "e2e/node gets the client from the packed tarball (make e2e-node), not the sources"
    )
