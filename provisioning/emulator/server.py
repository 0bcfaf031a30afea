"""HTTP front of the ARM emulator: routing, the checks every ARM request passes (api-version,
Bearer token), fault injection, the request log, and the ``/_emulator`` control endpoints.

Control endpoints (no auth, never faulted, not logged):

- ``GET  /_emulator/requests``  the request log: ``[{"method", "path", "status", ...}]``
- ``POST /_emulator/reset``     forget resources, faults and the log
- ``POST /_emulator/faults``    ``{"spec": "throttle,method=PUT,count=1"}``
- ``POST /_emulator/config``    ``{"create_delay": 0.5, "update_delay": .., "delete_delay": ..}``
- ``POST /_emulator/token``     ``{"scopes": ["https://redis.azure.com/.default"], "objectId": ..}``
- ``GET  /_emulator/info``      the data plane: ``{"dataPlane": {"available", "caFile", "reason"}}``
  -> ``{"accessToken", "expiresOn", "objectId"}``: an unsigned JWT that the data plane accepts as
  the password of user ``objectId`` wherever an access policy assignment grants it
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs

from ..credentials import EMULATOR_OBJECT_ID, EMULATOR_TENANT_ID, decode_claims
from .faults import Fault, FaultSpecError, parse_fault
from .store import Reply, Store, error

_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _SUB + r"/resourcegroups/(?P<rg>[^/]+)"
_CACHE = _RG + r"/providers/microsoft\.cache/redis/(?P<name>[^/]+)"
_AMR = _RG + r"/providers/microsoft\.cache/redisenterprise/(?P<name>[^/]+)"
_DB = _AMR + r"/databases/(?P<db>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(f"^{pattern}/?$", re.IGNORECASE))
    for name, pattern in (
        ("check_name", _SUB + r"/providers/microsoft\.cache/checknameavailability"),
        (
            "operation",
            _SUB + r"/providers/microsoft\.cache/locations/(?P<loc>[^/]+)"
            r"/operationresults/(?P<op>[^/]+)",
        ),
        (
            "amr_status",
            _SUB + r"/providers/microsoft\.cache/locations/(?P<loc>[^/]+)"
            r"/operationsstatus/(?P<op>[^/]+)",
        ),
        (
            "amr_result",
            _AMR + r"(?:/databases/[^/]+(?:/accesspolicyassignments/[^/]+)?)?"
            r"/operationresults/(?P<op>[^/]+)",
        ),
        ("amr_list_sub", _SUB + r"/providers/microsoft\.cache/redisenterprise"),
        ("amr_list_rg", _RG + r"/providers/microsoft\.cache/redisenterprise"),
        ("amr_assignments", _DB + r"/accesspolicyassignments"),
        ("amr_assignment", _DB + r"/accesspolicyassignments/(?P<item>[^/]+)"),
        ("amr_list_keys", _DB + r"/listkeys"),
        ("amr_regenerate_key", _DB + r"/regeneratekey"),
        ("amr_databases", _AMR + r"/databases"),
        ("amr_database", _DB),
        ("amr_cluster", _AMR),
        ("list_sub", _SUB + r"/providers/microsoft\.cache/redis"),
        ("list_rg", _RG + r"/providers/microsoft\.cache/redis"),
        ("assignments", _CACHE + r"/accesspolicyassignments"),
        ("assignment", _CACHE + r"/accesspolicyassignments/(?P<item>[^/]+)"),
        ("firewall_rules", _CACHE + r"/firewallrules"),
        ("firewall_rule", _CACHE + r"/firewallrules/(?P<item>[^/]+)"),
        ("list_keys", _CACHE + r"/listkeys"),
        ("regenerate_key", _CACHE + r"/regeneratekey"),
        ("cache", _CACHE),
        ("group", _RG),
    )
]


def _token_problem(header: str | None) -> Reply | None:
    """401 unless the request carries a JWT-shaped Bearer token that has not expired."""
    if not header or not header.lower().startswith("bearer "):
        return error(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        )
    try:
        claims = decode_claims(header[7:].strip())
    except ValueError:
        return error(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        )
    exp = claims.get("exp")
    if isinstance(exp, (int, float)) and exp < time.time():
        return error(
            401,
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time is earlier than current UTC time.",
        )
    return None


def _b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def issue_token(object_id: str, scope: str, lifetime: int = 3600) -> tuple[str, int]:
    """An unsigned JWT for ``object_id`` (audience: ``scope`` without ``/.default``) and its
    expiry in epoch seconds."""
    now = int(time.time())
    audience = scope[: -len("/.default")] if scope.endswith("/.default") else scope
    claims = {
        "oid": object_id,
        "tid": EMULATOR_TENANT_ID,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": base64.urlsafe_b64encode(os.urandom(12)).decode().rstrip("="),
    }
    return f"{_b64url({'alg': 'none', 'typ': 'JWT'})}.{_b64url(claims)}.", now + lifetime


def _number(value: Any) -> float | None:
    """``value`` as a finite float (numbers and numeric strings), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


class EmulatorServer(ThreadingHTTPServer):
    """A threading HTTP server holding one :class:`Store`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: Store, verbose: bool = False) -> None:
        super().__init__(address, _Handler)
        self.store = store
        self.verbose = verbose

    @property
    def endpoint(self) -> str:
        """``http://host:port`` of this server."""
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{port}"

    def start_background(self) -> threading.Thread:
        """Serve on a daemon thread (for in-process use)."""
        thread = threading.Thread(target=self.serve_forever, name="arm-emulator", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- plumbing -----------------------------------------------------------------------------
    def _read_body(self) -> Any:
        """The parsed JSON body, None when empty, or a ValueError when it cannot be read."""
        header = (self.headers.get("Content-Length") or "0").strip()
        if not (header.isascii() and header.isdigit()):
            # Where the body ends is unknown: answer, then close the connection.
            self.close_connection = True
            return ValueError("The Content-Length header is not a number.")
        length = int(header)
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return ValueError("The request content was not valid JSON.")

    def _send(self, method: str, reply: Reply) -> None:
        data = b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        request_id = str(uuid.uuid4())
        self.send_header("x-ms-request-id", request_id)
        self.send_header(
            "x-ms-correlation-request-id",
            self.headers.get("x-ms-correlation-request-id")
            or self.headers.get("x-ms-client-request-id")
            or request_id,
        )
        self.send_header("Cache-Control", "no-cache")
        if reply.body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if method != "HEAD" and data:
            self.wfile.write(data)

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {k.lower(): v[-1] for k, v in parse_qs(parts.query).items()}
        body = self._read_body()
        control = path.lower().startswith("/_emulator/")
        try:
            if control:
                reply = self._control(method, path.lower(), body)
            else:
                reply = self._arm(method, path, query, body)
        except Exception as exc:  # an emulator bug must still answer, like a real 500
            reply = error(500, "InternalServerError", f"emulator error: {exc!r}")
        if control:
            self._send(method, reply)
            return
        with self.server.store.lock:
            self.server.store.log.append(
                {
                    "method": method,
                    "path": path,
                    "status": reply.status,
                    "time": time.time(),
                }
            )
        self._send(method, reply)

    def _arm(self, method: str, path: str, query: dict[str, str], body: Any) -> Reply:
        store = self.server.store
        injected = store.request_fault(method, path)
        if injected is not None:
            return injected
        denied = _token_problem(self.headers.get("Authorization"))
        if denied is not None:
            return denied
        api = query.get("api-version")
        if not api:
            return error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if isinstance(body, ValueError):
            return error(400, "InvalidRequestContent", str(body))
        for name, pattern in _ROUTES:
            match = pattern.match(path)
            if match:
                return self._dispatch(name, method, match.groupdict(), body, api)
        return error(404, "InvalidResourceType", f"No route for {method} {path}.")

    def _base_url(self) -> str:
        return f"http://{self.headers.get('Host') or self.server.endpoint.split('//', 1)[1]}"

    def _dispatch(self, route: str, method: str, p: dict[str, str], body: Any, api: str) -> Reply:
        if route.startswith("amr_"):
            return self._dispatch_enterprise(route, method, p, body, api)
        store = self.server.store
        sub, rg, name, item = p.get("sub", ""), p.get("rg", ""), p.get("name", ""), p.get("item")
        wrong = error(405, "MethodNotAllowed", f"{method} is not supported on this resource.")
        if route == "group":
            return store.group(method, sub, rg, body)
        if route == "check_name":
            return store.check_name(body) if method == "POST" else wrong
        if route == "operation":
            return (
                store.operation_result(p["op"], self._base_url(), api) if method == "GET" else wrong
            )
        if route in ("list_sub", "list_rg"):
            return (
                store.list_caches(sub, rg if route == "list_rg" else None)
                if method == "GET"
                else wrong
            )
        if route in ("assignments", "assignment"):
            if route == "assignments" and method != "GET":
                return wrong
            return store.assignment(method, sub, rg, name, item, body)
        if route in ("firewall_rules", "firewall_rule"):
            if route == "firewall_rules" and method != "GET":
                return wrong
            return store.firewall_rule(method, sub, rg, name, item, body)
        if route == "list_keys":
            return store.keys(sub, rg, name) if method == "POST" else wrong
        if route == "regenerate_key":
            return store.keys(sub, rg, name, regenerate=body or {}) if method == "POST" else wrong
        # route == "cache"
        if method == "GET":
            return store.get_cache(sub, rg, name)
        if method == "PUT":
            return store.put_cache(sub, rg, name, body, self._base_url(), api)
        if method == "PATCH":
            return store.patch_cache(sub, rg, name, body)
        if method == "DELETE":
            return store.delete_cache(sub, rg, name, self._base_url(), api)
        return wrong

    def _dispatch_enterprise(
        self, route: str, method: str, p: dict[str, str], body: Any, api: str
    ) -> Reply:
        """Routes of Microsoft.Cache/redisEnterprise (Azure Managed Redis)."""
        amr = self.server.store.enterprise
        sub, rg, name, db = p.get("sub", ""), p.get("rg", ""), p.get("name", ""), p.get("db", "")
        base = self._base_url()
        wrong = error(405, "MethodNotAllowed", f"{method} is not supported on this resource.")
        if route == "amr_status":
            return amr.operation_status(sub, p["loc"], p["op"]) if method == "GET" else wrong
        if route == "amr_result":
            return amr.operation_result(p["op"]) if method == "GET" else wrong
        if route in ("amr_list_sub", "amr_list_rg"):
            if method != "GET":
                return wrong
            return amr.list_clusters(sub, rg if route == "amr_list_rg" else None)
        if route == "amr_assignments":
            if method != "GET":
                return wrong
            return amr.assignment(method, sub, rg, name, db, None, body, base, api)
        if route == "amr_assignment":
            if method not in ("GET", "PUT", "DELETE"):
                return wrong
            return amr.assignment(method, sub, rg, name, db, p["item"], body, base, api)
        if route == "amr_list_keys":
            return amr.keys(sub, rg, name, db) if method == "POST" else wrong
        if route == "amr_regenerate_key":
            return amr.keys(sub, rg, name, db, regenerate=body or {}) if method == "POST" else wrong
        if route == "amr_databases":
            return amr.list_databases(sub, rg, name) if method == "GET" else wrong
        if route == "amr_database":
            if method == "GET":
                return amr.get_database(sub, rg, name, db)
            if method == "PUT":
                return amr.put_database(sub, rg, name, db, body, base, api)
            if method == "PATCH":
                return amr.patch_database(sub, rg, name, db, body)
            if method == "DELETE":
                return amr.delete_database(sub, rg, name, db, base, api)
            return wrong
        # route == "amr_cluster"
        if method == "GET":
            return amr.get_cluster(sub, rg, name)
        if method == "PUT":
            return amr.put_cluster(sub, rg, name, body, base, api)
        if method == "PATCH":
            return amr.patch_cluster(sub, rg, name, body)
        if method == "DELETE":
            return amr.delete_cluster(sub, rg, name, base, api)
        return wrong

    def _token(self, body: Any) -> Reply:
        """Issue a data-plane token (contract: unsigned JWT, registered with the data plane)."""
        if body is None:
            body = {}
        if not isinstance(body, dict):
            return error(400, "InvalidRequest", "post a JSON object with 'scopes'")
        scopes = body.get("scopes") or ["https://redis.azure.com/.default"]
        if not isinstance(scopes, list) or not all(isinstance(x, str) for x in scopes):
            return error(400, "InvalidRequest", "'scopes' must be a list of strings")
        object_id = body.get("objectId") or EMULATOR_OBJECT_ID
        if not isinstance(object_id, str):
            return error(400, "InvalidRequest", "'objectId' must be a string")
        token, expires = issue_token(object_id, scopes[0])
        data_plane = self.server.store.data_plane
        if data_plane.available:
            data_plane.issue_token(object_id, token, expires)
        return Reply(200, {"accessToken": token, "expiresOn": expires, "objectId": object_id})

    def _control(self, method: str, path: str, body: Any) -> Reply:
        store = self.server.store
        if path.rstrip("/") == "/_emulator/requests" and method == "GET":
            with store.lock:
                return Reply(200, list(store.log))
        if path.rstrip("/") == "/_emulator/reset" and method == "POST":
            store.reset()
            return Reply(200, {"reset": True})
        if path.rstrip("/") == "/_emulator/faults" and method == "POST":
            spec = body.get("spec") if isinstance(body, dict) else None
            try:
                fault: Fault = parse_fault(str(spec or ""))
            except FaultSpecError as exc:
                return error(400, "InvalidFault", str(exc))
            store.add_fault(fault)
            return Reply(200, {"added": spec})
        if path.rstrip("/") == "/_emulator/config" and method == "POST":
            if isinstance(body, ValueError):
                return error(400, "InvalidConfig", str(body))
            if not isinstance(body, dict):
                return error(400, "InvalidConfig", "post a JSON object")
            known = {f.name for f in attrs.fields(type(store.settings))}
            values: dict[str, float] = {}
            for key, value in body.items():
                if key not in known:
                    return error(400, "InvalidConfig", f"unknown setting {key!r}")
                number = _number(value)
                if number is None:
                    return error(
                        400, "InvalidConfig", f"setting {key!r} must be a number, not {value!r}"
                    )
                values[key] = number
            with store.lock:
                for key, number in values.items():
                    setattr(store.settings, key, number)
                return Reply(200, {"settings": attrs.asdict(store.settings)})
        if path.rstrip("/") == "/_emulator/token" and method == "POST":
            if isinstance(body, ValueError):
                return error(400, "InvalidRequest", str(body))
            return self._token(body)
        if path.rstrip("/") == "/_emulator/health":
            return Reply(200, {"ok": True})
        if path.rstrip("/") == "/_emulator/info" and method == "GET":
            plane = store.data_plane
            ca_file = str(plane.ca_file) if plane.available and plane.ca_file else None
            return Reply(
                200,
                {
                    "dataPlane": {
                        "available": plane.available,
                        "caFile": ca_file,
                        "reason": plane.unavailable_reason,
                    }
                },
            )
        return error(404, "NotFound", f"no control endpoint {method} {path}")
