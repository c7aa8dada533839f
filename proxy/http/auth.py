"""Authentication of each request (run by the app's middleware), the model check handlers
call, and the key-management endpoints.

Admin endpoints (master key only): ``POST /admin/keys`` creates a key and returns it once,
``GET /admin/keys`` lists every key (YAML and run-time) with its limits and spend, and
``DELETE /admin/keys/{name}`` revokes a run-time key.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web
from pydantic import Field, ValidationError

from proxy.auth.guard import Authenticator
from proxy.auth.keys import Client, hash_key, new_key
from proxy.auth.spec import KEY_NAME, ClientLimits
from proxy.auth.store import AuthStoreError, StoredKey
from proxy.http.body import read_body
from proxy.http.state import AUTH, CLIENT
from proxy.wire.errors import (
    InvalidRequestError,
    PermissionDeniedError,
    ProxyError,
    ServiceUnavailableError,
)
from proxy.wire.protocol import invalid_from_validation, parse_json_body

# Open without a key: probes, the scraper and the dashboard's page (it holds no data; its data
# endpoint, /v1/adaptive/stats, needs the master key). Everything else (``/v1/*``) needs one.
_OPEN_PREFIXES = ("/health/", "/metrics", "/dashboard")
_ADMIN_PREFIX = "/admin/"
# Endpoints that reach no upstream (handlers.register_routes) spend nothing: the spend limit
# does not gate them, the rate limit does. An endpoint missing here is gated: the safe side.
_SPEND_FREE_PATHS = frozenset(
    {
        "/v1/models",
        "/models",
        "/v1/adaptive/decide",
        "/v1/adaptive/allocate",
        "/v1/adaptive/feedback",
        "/v1/adaptive/learning",
        "/v1/adaptive/stats",
    }
)


class NewKeyRequest(ClientLimits):
    """``POST /admin/keys``: the key's name and limits."""

    name: str = Field(pattern=KEY_NAME.pattern)


def client_of(request: web.Request) -> Client | None:
    """The authenticated client of a request (``None`` when auth is off)."""
    return request.get(CLIENT)


def authorize_model(request: web.Request, model: str) -> None:
    """403 unless the request's key may use ``model``; a no-op when auth is off."""
    client = request.get(CLIENT)
    auth = request.app.get(AUTH)
    if client is not None and auth is not None:
        auth.authorize(client, model)


async def authenticate_request(request: web.Request) -> None:
    """Authenticate an API request and admit it under its key's limits (raises if refused);
    a no-op when auth is off and for the probes and the scraper."""
    auth = request.app.get(AUTH)
    if auth is None or request.path.startswith(_OPEN_PREFIXES):
        return
    client = await auth.authenticate(request.headers.get("Authorization"))
    request[CLIENT] = client
    if request.path.startswith(_ADMIN_PREFIX):
        if not client.is_master:
            raise PermissionDeniedError("the admin endpoints need a master key")
    else:
        await auth.admit(client, spends=request.path not in _SPEND_FREE_PATHS)


def _auth(request: web.Request) -> Authenticator:
    auth = request.app.get(AUTH)
    if auth is None:
        raise ProxyError(
            "authentication is off (no server.auth in the policy file)",
            status=404,
            code="auth_disabled",
        )
    return auth


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def _unavailable(exc: AuthStoreError) -> ServiceUnavailableError:
    return ServiceUnavailableError(f"the key store is unreachable ({exc})", code="auth_unavailable")


async def create_key(request: web.Request) -> web.Response:
    """``POST /admin/keys``: a new client key, returned once (only its sha256 is stored)."""
    auth = _auth(request)
    try:
        spec = NewKeyRequest.model_validate(parse_json_body(await read_body(request)))
    except ValidationError as exc:
        raise invalid_from_validation(exc) from None
    key = new_key()
    limits = ClientLimits.model_validate(spec.model_dump(exclude={"name"}))
    stored = StoredKey(spec.name, hash_key(key), limits, time.time())
    try:
        created = await auth.create_key(stored)
    except AuthStoreError as exc:
        raise _unavailable(exc) from None
    if not created:
        conflict = InvalidRequestError(
            f"a key named {spec.name!r} exists already", param="name", code="key_exists"
        )
        conflict.status = 409
        raise conflict
    return _json(
        {
            "object": "adaptive.key",
            "name": spec.name,
            "key": key,
            "limits": limits.model_dump(mode="json"),
            "created": int(stored.created_s),
        },
        status=201,
    )


async def list_keys(request: web.Request) -> web.Response:
    """``GET /admin/keys``: every key's name, source, limits and spend (never the key)."""
    auth = _auth(request)
    try:
        spends = await auth.key_spends(time.time())
    except AuthStoreError as exc:
        raise _unavailable(exc) from None
    items = [
        {
            "name": spend.name,
            "source": spend.source,
            "limits": spend.limits.model_dump(mode="json"),
            "spend_today_usd": spend.spend_today_usd,
            "spend_this_month_usd": spend.spend_this_month_usd,
        }
        for spend in spends
    ]
    return _json({"object": "list", "data": items})


async def revoke_key(request: web.Request) -> web.Response:
    """``DELETE /admin/keys/{name}``: revoke a run-time key (YAML keys are removed in the file)."""
    auth = _auth(request)
    name = request.match_info["name"]
    if name in auth.yaml_names:
        raise InvalidRequestError(
            f"key {name!r} is defined in the policy file; remove it there", code="key_in_yaml"
        )
    try:
        revoked = await auth.revoke_key(name)
    except AuthStoreError as exc:
        raise _unavailable(exc) from None
    if not revoked:
        raise ProxyError(f"no run-time key named {name!r}", status=404, code="key_not_found")
    return _json({"object": "adaptive.key", "name": name, "revoked": True})


def register_admin_routes(app: web.Application) -> None:
    """Attach the key-management endpoints."""
    app.router.add_post("/admin/keys", create_key)
    app.router.add_get("/admin/keys", list_keys)
    app.router.add_delete("/admin/keys/{name}", revoke_key)
