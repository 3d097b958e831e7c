"""The schema as clients see it: FastAPI's generated OpenAPI document, with two fixes
made once here rather than per route.

- The OAuth2 password flow's tokenUrl follows API_PREFIX (the scheme is declared at
  import time, before the prefix is known).
- Every file field (a string with `contentMediaType` and no `contentEncoding`: raw bytes
  in a multipart body) also carries `format: binary`. OpenAPI 3.1 says contentMediaType,
  but many generators (openapi-python-client, openapi-zod-client, ng-openapi-gen, RapiDoc)
  still look only for the 3.0 `format: binary` and would send the photograph as text.
- An operation that needs no token says so (`security: []`) instead of saying nothing,
  so linters and generators need not guess (Redocly's security-defined rule).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI


def mark_binary_fields(node: Any) -> None:
    """Add `format: binary` to every raw-bytes string schema under `node`, in place."""
    if isinstance(node, dict):
        if (
            node.get("type") == "string"
            and "contentMediaType" in node
            and "contentEncoding" not in node
        ):
            node.setdefault("format", "binary")
        for value in node.values():
            mark_binary_fields(value)
    elif isinstance(node, list):
        for value in node:
            mark_binary_fields(value)


def customise_openapi(app: FastAPI, token_url: str) -> None:
    build_schema = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build_schema()  # FastAPI builds it once and keeps it; patching is idempotent
        for scheme in schema.get("components", {}).get("securitySchemes", {}).values():
            if "password" in scheme.get("flows", {}):
                scheme["flows"]["password"]["tokenUrl"] = token_url
        mark_binary_fields(schema)
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if isinstance(operation, dict) and "responses" in operation:
                    operation.setdefault("security", [])
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
