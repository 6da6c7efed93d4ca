"""Schemathesis hooks of the OpenAPI test (tests/tests/black_box/openapi.rs):
a component upload, `application/wasm`, is sent as the raw bytes generated,
like `application/octet-stream`."""

import schemathesis

schemathesis.serializer.alias("application/wasm", "application/octet-stream")
