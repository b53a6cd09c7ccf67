"""The OpenAPI 3.1 document of relay's HTTP interface, served at GET /openapi.json.

OPERATIONS is the one source of truth: one fragment per route, keyed by the method and the
path exactly as make_app registers it. tests/test_openapi.py walks app.router and fails for
any route that is missing here (and for any entry here that is no route).

To describe a new route, add one entry to OPERATIONS:

    ("GET", "/api/hooks/{id}"): operation(
        "One Kudu hook", tag="kudu", security=ADMIN,
        parameters=[path_parameter("id", "the hook's id")],
        answers={200: json_answer("The hook", ref("KuduHook")), 401: UNAUTHORIZED,
                 404: error("No hook has this id")}),

and put any new schema into SCHEMAS (ref("KuduHook") points at it). The JSON Schemas of
schemas/ are components already (ref("Push"), ref("Callback")).
"""

from __future__ import annotations

import copy
from typing import Any

from relay import __version__, config, schemas
from relay.models import CallbackState, DeliveryState, StepState

Fragment = dict[str, Any]

ADMIN: list[Fragment] = [{"adminToken": []}]
CHAIN_TOKEN: list[Fragment] = [{"chainToken": []}]
NO_AUTH: list[Fragment] = []


def ref(name: str) -> Fragment:
    return {"$ref": f"#/components/schemas/{name}"}


def json_answer(description: str, schema: Fragment,
                headers: dict[str, Fragment] | None = None) -> Fragment:
    answer: Fragment = {"description": description,
                        "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def error(description: str, headers: dict[str, Fragment] | None = None) -> Fragment:
    """An answer with DESIGN §4's error body."""
    return json_answer(description, ref("Error"), headers)


def header(description: str, schema: Fragment) -> Fragment:
    return {"description": description, "schema": schema}


def path_parameter(name: str, description: str) -> Fragment:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}}


def query_parameter(name: str, description: str, schema: Fragment) -> Fragment:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


def json_body(schema: Fragment, description: str) -> Fragment:
    return {"required": True, "description": description,
            "content": {"application/json": {"schema": schema}}}


def operation(summary: str, *, tag: str, security: list[Fragment],
              answers: dict[int, Fragment], parameters: list[Fragment] | None = None,
              body: Fragment | None = None, description: str | None = None) -> Fragment:
    fragment: Fragment = {"summary": summary, "tags": [tag], "security": security,
                          "responses": {str(status): answer
                                        for status, answer in sorted(answers.items())}}
    if description:
        fragment["description"] = description
    if parameters:
        fragment["parameters"] = parameters
    if body is not None:
        fragment["requestBody"] = body
    return fragment


RETRY_AFTER = {"Retry-After": header("Seconds to wait before trying again",
                                     {"type": "string", "pattern": "^[0-9]+$"})}
BAD_JSON = error("Not strict JSON, not an object, or nested too deep")
UNAUTHORIZED = error("Missing or wrong `Authorization: Bearer <admin_token>`",
                     {"WWW-Authenticate": header("`Bearer realm=\"relay\"`",
                                                 {"type": "string"})})
TOO_SLOW = error("The body did not arrive within `[server] read_timeout`")
TOO_LARGE = error("The body is larger than `[server] max_body_bytes`")
STORE_DOWN = error("The store is unavailable; nothing was stored", RETRY_AFTER)
NO_HOOK = error("Unknown chain or wrong token (the very same answer for both)")


def _push_answers() -> dict[int, Fragment]:
    return {
        200: json_answer("The repository matches none of the chain's `repositories`: "
                         "nothing was stored", ref("Ignored")),
        202: json_answer("Stored durably; the chain will run", ref("Accepted"),
                         {"Location": header("The `status_url`", {"type": "string"})}),
        400: BAD_JSON, 404: NO_HOOK, 408: TOO_SLOW, 413: TOO_LARGE,
        422: error("The payload breaks schemas/push.json; one detail per violation"),
        429: error("The chain's `rate_limit` is used up", RETRY_AFTER),
        503: STORE_DOWN,
    }


_PUSH_BODY = json_body(ref("Push"), "A Docker Hub push notification")
_DELIVERY_ID = path_parameter("id", "A delivery's id")

OPERATIONS: dict[tuple[str, str], Fragment] = {
    # -- intake ----------------------------------------------------------------------------
    ("POST", "/hooks/{chain}/{token}"): operation(
        "Push notification, the token in the URL", tag="intake", security=NO_AUTH,
        parameters=[path_parameter("chain", "The chain's name"),
                    path_parameter("token", "The chain's token (it is the credential)")],
        body=_PUSH_BODY, answers=_push_answers()),
    ("POST", "/hooks/{chain}"): operation(
        "Push notification, the token in `Authorization: Bearer`", tag="intake",
        security=CHAIN_TOKEN, description="For registries that can only send static headers "
        "(distribution, Harbor). A missing or wrong token is answered like a wrong URL token.",
        parameters=[path_parameter("chain", "The chain's name")],
        body=_PUSH_BODY, answers=_push_answers()),
    # -- callbacks -------------------------------------------------------------------------
    ("POST", "/callbacks/{token}"): operation(
        "A target's verdict on its step", tag="callbacks", security=NO_AUTH,
        parameters=[path_parameter("token", "The step's callback token")],
        body=json_body(ref("Callback"), "The Docker Hub callback"),
        answers={200: json_answer("Accepted: the chain moves on", ref("CallbackAccepted")),
                 400: BAD_JSON, 404: error("No step has this callback URL"), 408: TOO_SLOW,
                 409: error("The step was already answered"), 413: TOO_LARGE,
                 422: error("The callback breaks schemas/callback.json"),
                 503: STORE_DOWN}),
    # -- history ---------------------------------------------------------------------------
    ("GET", "/history"): operation(
        "Deliveries, newest first", tag="history", security=ADMIN,
        parameters=[
            query_parameter("chain", "Only this chain", {"type": "string"}),
            query_parameter("state", "Only deliveries in this state",
                            {"enum": [s.value for s in DeliveryState]}),
            query_parameter("repository", "Only this repository", {"type": "string"}),
            query_parameter("tag", "Only this tag", {"type": "string"}),
            query_parameter("limit", "Page size",
                            {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
            query_parameter("cursor", "The `next_cursor` of the previous page",
                            {"type": "string"}),
        ],
        answers={200: json_answer("One page", ref("HistoryPage")),
                 400: error("A query parameter is not valid; one detail per parameter"),
                 401: UNAUTHORIZED, 503: STORE_DOWN}),
    ("GET", "/history/{id}"): operation(
        "One delivery with every attempt and callback", tag="history", security=ADMIN,
        parameters=[_DELIVERY_ID],
        answers={200: json_answer("The delivery", ref("Delivery")), 401: UNAUTHORIZED,
                 404: error("No delivery has this id"), 503: STORE_DOWN}),
    ("POST", "/history/{id}/redeliver"): operation(
        "A new delivery of the same payload", tag="history", security=ADMIN,
        parameters=[_DELIVERY_ID],
        answers={202: json_answer("The new delivery", ref("Accepted"),
                                  {"Location": header("The `status_url`", {"type": "string"})}),
                 401: UNAUTHORIZED, 404: error("No delivery has this id"),
                 409: error("The delivery's chain is no longer configured"),
                 503: STORE_DOWN}),
    # -- operations ------------------------------------------------------------------------
    ("GET", "/healthz"): operation(
        "Liveness", tag="operations", security=NO_AUTH,
        answers={200: json_answer("Serving", ref("Status"))}),
    ("GET", "/readyz"): operation(
        "Readiness: the store answers", tag="operations", security=NO_AUTH,
        answers={200: json_answer("Ready", ref("Status")), 503: STORE_DOWN}),
    ("GET", "/openapi.json"): operation(
        "This document", tag="operations", security=NO_AUTH,
        answers={200: json_answer("OpenAPI 3.1", {"type": "object"})}),
}

_TIME = {"type": "string", "format": "date-time"}
_OPTIONAL_TIME = {"type": ["string", "null"], "format": "date-time"}
_OPTIONAL_TEXT = {"type": ["string", "null"]}

SCHEMAS: dict[str, Fragment] = {
    "Error": {
        "type": "object", "required": ["error", "details"],
        "properties": {
            "error": {"type": "string", "description": "One sentence"},
            "details": {"type": "array", "items": {
                "type": "object", "required": ["path", "message"],
                "properties": {"path": {"type": "string", "description": "A JSON pointer"},
                               "message": {"type": "string"}}}},
        },
    },
    "Accepted": {
        "type": "object", "required": ["id", "status_url"],
        "properties": {"id": {"type": "string"}, "status_url": {"type": "string"}},
    },
    "Ignored": {"type": "object", "required": ["ignored"],
                "properties": {"ignored": {"type": "string"}}},
    "CallbackAccepted": {
        "type": "object", "required": ["delivery", "step", "state"],
        "properties": {"delivery": {"type": "string"}, "step": {"type": "integer"},
                       "state": {"enum": [s.value for s in CallbackState]}},
    },
    "Status": {"type": "object", "required": ["status"],
               "properties": {"status": {"type": "string"}}},
    "Attempt": {
        "type": "object", "required": ["at", "status", "duration_ms", "error"],
        "properties": {"at": _TIME, "status": {"type": ["integer", "null"]},
                       "duration_ms": {"type": "number"}, "error": _OPTIONAL_TEXT},
    },
    "StepCallback": {
        "type": "object",
        "required": ["state", "description", "context", "target_url", "received_at"],
        "properties": {"state": {"enum": [s.value for s in CallbackState]},
                       "description": _OPTIONAL_TEXT, "context": _OPTIONAL_TEXT,
                       "target_url": _OPTIONAL_TEXT, "received_at": _TIME},
    },
    "Step": {
        "type": "object",
        "required": ["index", "target", "url", "state", "attempts", "callback"],
        "properties": {
            "index": {"type": "integer"}, "target": {"type": "string"},
            "url": {"type": "string"}, "state": {"enum": [s.value for s in StepState]},
            "reason": _OPTIONAL_TEXT, "webhook_id": {"type": "string"},
            "started_at": _OPTIONAL_TIME, "finished_at": _OPTIONAL_TIME,
            "attempts": {"type": "array", "items": ref("Attempt")},
            "callback": {"oneOf": [{"type": "null"}, ref("StepCallback")]},
        },
    },
    "Notice": {
        "type": "object", "required": ["kind", "name", "url", "state", "attempts"],
        "description": "A POST made when the chain ended (upstream report, Kudu, Dockership)",
        "properties": {
            "kind": {"type": "string"}, "name": {"type": "string"}, "url": {"type": "string"},
            "state": {"enum": [s.value for s in StepState]},
            "status": {"type": ["integer", "null"]}, "reason": _OPTIONAL_TEXT,
            "webhook_id": {"type": "string"},
            "attempts": {"type": "array", "items": ref("Attempt")},
        },
    },
    "DeliverySummary": {
        "type": "object",
        "required": ["id", "chain", "state", "source", "received_at"],
        "properties": {
            "id": {"type": "string"}, "chain": {"type": "string"},
            "state": {"enum": [s.value for s in DeliveryState]},
            "source": {"type": "string"}, "redelivery_of": _OPTIONAL_TEXT,
            "repository": _OPTIONAL_TEXT, "tag": _OPTIONAL_TEXT,
            "received_at": _TIME, "started_at": _OPTIONAL_TIME, "finished_at": _OPTIONAL_TIME,
            "summary": _OPTIONAL_TEXT,
        },
    },
    "HistoryPage": {
        "type": "object", "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": {"allOf": [ref("DeliverySummary"), {
                "type": "object", "required": ["steps"],
                "properties": {"steps": {"type": "array", "items": {
                    "type": "object", "required": ["index", "target", "state"],
                    "properties": {"index": {"type": "integer"}, "target": {"type": "string"},
                                   "state": {"enum": [s.value for s in StepState]}}}}}}]}},
            "next_cursor": _OPTIONAL_TEXT,
        },
    },
    "Delivery": {"allOf": [ref("DeliverySummary"), {
        "type": "object", "required": ["payload", "steps", "upstream", "notices"],
        "properties": {
            "payload": {"type": "object", "description": "The push as received"},
            "steps": {"type": "array", "items": ref("Step")},
            "upstream": {"oneOf": [{"type": "null"}, ref("Notice")]},
            "notices": {"type": "array", "items": ref("Notice")},
        }}]},
}


def document(settings: config.Settings) -> Fragment:
    """The whole document, for the relay at `settings.server.public_url`."""
    paths: dict[str, Fragment] = {}
    for (method, path), fragment in OPERATIONS.items():
        paths.setdefault(path, {})[method.lower()] = fragment
    components = {name.title(): _component(name) for name in sorted(schemas.names())}
    return {
        "openapi": "3.1.0",
        "info": {"title": "relay", "version": __version__,
                 "description": "A Docker Hub-style webhook chain relay."},
        "servers": [{"url": settings.server.public_url}],
        "paths": paths,
        "components": {
            "schemas": {**components, **SCHEMAS},
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": "`[server] admin_token`"},
                "chainToken": {"type": "http", "scheme": "bearer",
                               "description": "The chain's `token`"},
            },
        },
    }


def _component(name: str) -> Fragment:
    """A schema of schemas/ as a component: Push for push.json. Its `$id` and `$schema` are
    dropped: inside the document, 2020-12 is the dialect already and refs are local."""
    schema = copy.deepcopy(schemas.schema(name))
    schema.pop("$id", None)
    schema.pop("$schema", None)
    return schema

