"""The OpenAPI 3.1 document of relay's HTTP interface, served at GET /openapi.json.

OPERATIONS is the one source of truth: one fragment per route, keyed by the method and the
path exactly as make_app registers it. tests/e2e/test_openapi.py walks app.router and fails for
any route that is missing here (and for any entry here that is no route).

To describe a new route, add one entry to OPERATIONS:

    ("GET", "/api/hooks/{id}"): operation(
        "One Kudu hook", tag="kudu", security=ADMIN,
        parameters=[path_parameter("id", "the hook's id")],
        answers={200: json_answer("The hook", ref("KuduHookView")), 401: UNAUTHORIZED,
                 404: error("No hook has this id")}),

and put any new answer schema into SCHEMAS (ref("KuduHookView") points at it). The JSON
Schemas of schemas/ are components already, named in CamelCase (ref("Push"),
ref("KuduHook") for schemas/kudu-hook.json).
"""

from __future__ import annotations

import copy
from typing import Any

from relay import __version__, config, schemas
from relay.models import (
    HISTORY_PAGE_DEFAULT,
    HISTORY_PAGE_MAX,
    CallbackState,
    DeliveryState,
    StepState,
)

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
        200: json_answer(
            "Nothing new was stored: the push is for no repository of the chain, a "
            "registry's notification holds no tag push, or it repeats an event id or "
            "`Idempotency-Key` (the first delivery is given back)",
            {"oneOf": [ref("Ignored"), ref("Accepted")]}),
        202: json_answer("Stored durably; the chain will run", ref("Accepted"),
                         {"Location": header("The `status_url`", {"type": "string"})}),
        400: BAD_JSON, 404: NO_HOOK, 408: TOO_SLOW, 413: TOO_LARGE,
        422: error("The body breaks its schema; one detail per violation"),
        429: error("The chain's `rate_limit` is used up", RETRY_AFTER),
        503: STORE_DOWN,
    }


_PUSH_BODY = json_body(
    {"oneOf": [ref("Push"), ref("DistributionEvents"), ref("HarborEvent")]},
    "A Docker Hub push notification, a distribution registry's envelope of events "
    "(application/vnd.docker.distribution.events.v1+json or v2+json) or a Harbor event")
_KUDU_ID = path_parameter("id", "The hook's id (an integer)")
_CHAIN = path_parameter("chain", "A configured chain's name")
_TRIGGER_ID = path_parameter("id", "The trigger's id")
NO_CHAIN = error("No chain has this name")
NO_SERVICE = error("No service (chain) has this UUID")
API_KEY: list[Fragment] = [{"dockerCloudApiKey": []}, {"adminToken": []}]
API_KEY_MISSING = error("Missing or wrong credential: `Basic base64(username:apikey)` with "
                        "the admin token as apikey, or `Bearer <admin_token>`",
                        {"WWW-Authenticate": header("`Basic realm=\"relay\"`",
                                                    {"type": "string"})})
TRIGGER_LIMIT = error("The trigger's `trigger_rate_limit` or the chain's `rate_limit` is "
                      "used up", RETRY_AFTER)
SESSION_ONLY = error("No session (log in at POST /ui/login)")


def html(description: str) -> Fragment:
    return {"description": description, "content": {"text/html": {"schema": {
        "type": "string"}}}}


def _trigger_routes() -> dict[tuple[str, str], Fragment]:
    """Docker Cloud's trigger paths end in '/'; relay takes them with and without it."""
    routes: dict[tuple[str, str], Fragment] = {}
    for end in ("/", ""):
        base = "/api/chains/{chain}/triggers"
        routes[("GET", base + end)] = operation(
            "A chain's Docker Cloud service triggers", tag="triggers", security=ADMIN,
            parameters=[_CHAIN],
            answers={200: json_answer("Every trigger of the chain", ref("TriggerList")),
                     401: UNAUTHORIZED, 404: NO_CHAIN, 503: STORE_DOWN})
        routes[("POST", base + end)] = operation(
            "Create a trigger", tag="triggers", security=ADMIN, parameters=[_CHAIN],
            body=json_body(ref("Trigger"), "`name` and `operation`, both optional"),
            answers={201: json_answer("The trigger; its `url` is its credential",
                                      ref("TriggerView")),
                     400: BAD_JSON, 401: UNAUTHORIZED, 404: NO_CHAIN, 413: TOO_LARGE,
                     422: error("Not a valid trigger (SCALEUP is refused, with its reason)"),
                     503: STORE_DOWN})
        routes[("GET", base + "/{id}" + end)] = operation(
            "One trigger", tag="triggers", security=ADMIN, parameters=[_CHAIN, _TRIGGER_ID],
            answers={200: json_answer("The trigger", ref("TriggerView")), 401: UNAUTHORIZED,
                     404: error("No such chain or trigger"), 503: STORE_DOWN})
        routes[("DELETE", base + "/{id}" + end)] = operation(
            "Revoke a trigger at once", tag="triggers", security=ADMIN,
            parameters=[_CHAIN, _TRIGGER_ID],
            answers={204: {"description": "Revoked"}, 401: UNAUTHORIZED,
                     404: error("No such chain or trigger"), 503: STORE_DOWN})
        routes[("POST", base + "/{id}/call" + end)] = operation(
            "Call a trigger: run the chain again with its last accepted payload",
            tag="triggers", security=NO_AUTH,
            description="Needs no other credential: the unguessable trigger id is one.",
            parameters=[_CHAIN, _TRIGGER_ID],
            answers={202: json_answer("The new delivery", ref("Accepted")),
                     404: error("No such trigger, or the chain has no payload yet"),
                     429: TRIGGER_LIMIT, 503: STORE_DOWN})
    return routes


def _dockercloud_v1_routes() -> dict[tuple[str, str], Fragment]:
    """Docker Cloud's own paths (dockercloud_v1.py), with and without a namespace."""
    routes: dict[tuple[str, str], Fragment] = {}
    for prefix, namespace in (("/api/app/v1", []), ("/api/app/v1/{namespace}", [_NAMESPACE])):
        service = prefix + "/service/{uuid}/"
        in_service = [*namespace, _SERVICE_UUID]
        routes[("GET", prefix + "/service/")] = operation(
            "The chains as Docker Cloud services", tag="dockercloud", security=API_KEY,
            parameters=[*namespace, *_PAGING,
                        query_parameter("name", "Only the service of this name",
                                        {"type": "string"}),
                        query_parameter("uuid", "Only the service of this UUID",
                                        {"type": "string"}),
                        query_parameter("uuid__startswith", "Services whose UUID starts so",
                                        {"type": "string"})],
            answers={200: json_answer("One page of services", _list_of("ServiceView")),
                     400: error("An unknown filter, or a bad limit or offset"),
                     401: API_KEY_MISSING})
        routes[("GET", service)] = operation(
            "One service (a chain)", tag="dockercloud", security=API_KEY,
            parameters=in_service,
            answers={200: json_answer("The service", ref("ServiceView")),
                     401: API_KEY_MISSING, 404: NO_SERVICE})
        routes[("GET", service + "trigger/")] = operation(
            "The service's triggers", tag="dockercloud", security=API_KEY,
            parameters=[*in_service, *_PAGING],
            answers={200: json_answer("One page of triggers", _list_of("ServiceTrigger")),
                     400: error("A filter, or a bad limit or offset"),
                     401: API_KEY_MISSING, 404: NO_SERVICE, 503: STORE_DOWN})
        routes[("POST", service + "trigger/")] = operation(
            "Create a trigger", tag="dockercloud", security=API_KEY, parameters=in_service,
            body=json_body(ref("Trigger"), "`name` and `operation`, both optional"),
            answers={201: json_answer("The trigger; its `url` is its credential",
                                      ref("ServiceTrigger")),
                     400: BAD_JSON, 401: API_KEY_MISSING, 404: NO_SERVICE, 413: TOO_LARGE,
                     422: error("Not a valid trigger (SCALEUP is refused, with its reason)"),
                     503: STORE_DOWN})
        routes[("GET", service + "trigger/{trigger_uuid}/")] = operation(
            "One trigger", tag="dockercloud", security=API_KEY,
            parameters=[*in_service, _TRIGGER_UUID],
            answers={200: json_answer("The trigger", ref("ServiceTrigger")),
                     401: API_KEY_MISSING, 404: error("No such service or trigger"),
                     503: STORE_DOWN})
        routes[("DELETE", service + "trigger/{trigger_uuid}/")] = operation(
            "Revoke a trigger at once", tag="dockercloud", security=API_KEY,
            parameters=[*in_service, _TRIGGER_UUID],
            answers={204: {"description": "Revoked"}, 401: API_KEY_MISSING,
                     404: error("No such service or trigger"), 503: STORE_DOWN})
        routes[("POST", service + "trigger/{trigger_uuid}/call/")] = operation(
            "Call a trigger: run the chain again with its last accepted payload",
            tag="dockercloud", security=NO_AUTH,
            description="Needs no other credential: the unguessable trigger id is one.",
            parameters=[*in_service, _TRIGGER_UUID],
            answers={202: json_answer("The new delivery", ref("Accepted")),
                     404: error("No such service or trigger, or the chain has no payload "
                                "yet"),
                     429: TRIGGER_LIMIT, 503: STORE_DOWN})
    return routes


def _list_of(schema: str) -> Fragment:
    return {"type": "object", "required": ["meta", "objects"],
            "properties": {"meta": ref("TastypieMeta"),
                           "objects": {"type": "array", "items": ref(schema)}}}


_DELIVERY_ID = path_parameter("id", "A delivery's id")
_TIME_REF = {"type": "string", "format": "date-time"}
_TARGET = path_parameter("target", "A target's name in the chain")
_NAMESPACE = path_parameter("namespace", "A Docker Cloud namespace (any: relay has one set "
                                         "of chains)")
_SERVICE_UUID = path_parameter("uuid", "The chain's service UUID (`relay chains` shows it)")
_TRIGGER_UUID = path_parameter("trigger_uuid", "The trigger's id")
_PAGING = [query_parameter("limit", "Page size (0: the most, 250)",
                           {"type": "integer", "minimum": 0}),
           query_parameter("offset", "Objects to skip", {"type": "integer", "minimum": 0})]
_KUDU_PUBLISH = operation(
    "Publish an event to every Kudu hook of its type", tag="kudu", security=ADMIN,
    description="As Kudu does: the body is POSTed once to each hook, at once, and the answer "
                "comes when all have answered; their last_* fields say how it went.",
    parameters=[path_parameter("event", "The event type (PostDeployment, "
                                        "TriggeredJobFinished, or any other; any case)")],
    body=json_body({}, "Any JSON: what the hooks receive"),
    answers={200: json_answer("The hooks it was sent to, with their last_* fields",
                              {"type": "array", "items": ref("KuduHookView")}),
             400: BAD_JSON, 401: UNAUTHORIZED, 413: TOO_LARGE, 503: STORE_DOWN})

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
                            {"type": "integer", "minimum": 1, "maximum": HISTORY_PAGE_MAX,
                             "default": HISTORY_PAGE_DEFAULT}),
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
        body={"required": False, "description": "Optional: where the new delivery starts; "
                                                "the steps before it are skipped",
              "content": {"application/json": {"schema": ref("FromStep")}}},
        answers={202: json_answer("The new delivery", ref("Accepted"),
                                  {"Location": header("The `status_url`", {"type": "string"})}),
                 400: BAD_JSON, 401: UNAUTHORIZED, 404: error("No delivery has this id"),
                 409: error("The delivery's chain is no longer configured"),
                 422: error("from_step is out of range, or the delivery has no failed step"),
                 503: STORE_DOWN}),
    ("POST", "/history/redeliver"): operation(
        "Redeliver every ended delivery a filter selects, oldest first", tag="history",
        security=ADMIN, body=json_body(ref("RedeliveryFilter"), "Give state or since"),
        description="All or none: at most 10 000 in one call. Each new delivery's "
                    "`redelivery_of` names its original.",
        answers={200: json_answer("A dry run: how many match", ref("Count")),
                 202: json_answer("The new deliveries", ref("Redelivered")),
                 400: BAD_JSON, 401: UNAUTHORIZED, 413: TOO_LARGE,
                 422: error("The filter is not valid, or more than 10 000 match"),
                 503: STORE_DOWN}),
    # -- operations ------------------------------------------------------------------------
    ("POST", "/api/reload"): operation(
        "Read the config file again", tag="operations", security=ADMIN,
        description="As SIGHUP does: new and changed chains and targets apply to deliveries "
                    "that start after it; running deliveries keep theirs. A file that does "
                    "not parse or check keeps the old configuration serving (`422`).",
        answers={200: json_answer("Reloaded", ref("Reloaded")), 401: UNAUTHORIZED,
                 422: error("The file has a mistake (named in `error`); nothing changed")}),
    ("GET", "/api/targets"): operation(
        "Every configured target: active or paused", tag="operations", security=ADMIN,
        answers={200: json_answer("The targets", {
            "type": "object", "required": ["items"],
            "properties": {"items": {"type": "array", "items": ref("TargetState")}}}),
                 401: UNAUTHORIZED, 503: STORE_DOWN}),
    ("POST", "/api/targets/{chain}/{target}/pause"): operation(
        "Pause a target: it receives nothing, its steps wait", tag="operations",
        security=ADMIN, parameters=[_CHAIN, _TARGET],
        answers={200: json_answer("The target now", ref("TargetState")), 401: UNAUTHORIZED,
                 404: error("The chain has no such target"), 503: STORE_DOWN}),
    ("POST", "/api/targets/{chain}/{target}/resume"): operation(
        "Resume a target: its waiting steps are sent in their deliveries' order",
        tag="operations", security=ADMIN, parameters=[_CHAIN, _TARGET],
        answers={200: json_answer("The target now", ref("TargetState")), 401: UNAUTHORIZED,
                 404: error("The chain has no such target"), 503: STORE_DOWN}),
    ("POST", "/api/prune"): operation(
        "Delete deliveries that ended longer ago than older_than", tag="operations",
        security=ADMIN, body=json_body({
            "type": "object", "required": ["older_than"], "additionalProperties": False,
            "properties": {"older_than": {"type": "string", "examples": ["7d"]},
                           "dry_run": {"type": "boolean"}}}, "How old"),
        answers={200: json_answer("How many were (or would be) deleted", {
            "type": "object", "required": ["count", "dry_run"],
            "properties": {"count": {"type": "integer"}, "dry_run": {"type": "boolean"}}}),
                 400: BAD_JSON, 401: UNAUTHORIZED, 413: TOO_LARGE,
                 422: error("older_than is not an age"), 503: STORE_DOWN}),
    ("GET", "/healthz"): operation(
        "Liveness", tag="operations", security=NO_AUTH,
        answers={200: json_answer("Serving", ref("Status"))}),
    ("GET", "/readyz"): operation(
        "Readiness: the store answers", tag="operations", security=NO_AUTH,
        answers={200: json_answer("Ready", ref("Status")), 503: STORE_DOWN}),
    ("GET", "/openapi.json"): operation(
        "This document", tag="operations", security=NO_AUTH,
        answers={200: json_answer("OpenAPI 3.1", {"type": "object"})}),
    ("GET", "/metrics"): operation(
        "Prometheus metrics", tag="operations", security=NO_AUTH,
        answers={200: {"description": "The Prometheus text format",
                       "content": {"text/plain": {"schema": {"type": "string"}}}}}),
    # -- Kudu web hooks --------------------------------------------------------------------
    ("POST", "/api/hooks"): operation(
        "Subscribe a URL to an event type (PostDeployment by default)", tag="kudu",
        security=ADMIN,
        body=json_body(ref("KuduHook"), "Kudu's body: url, event, insecure_ssl (and chain)"),
        answers={201: json_answer("The hook (the existing one for the same url and "
                                  "settings)", ref("KuduHookView")),
                 400: BAD_JSON, 401: UNAUTHORIZED, 413: TOO_LARGE,
                 409: error("The url is registered with another event or settings"),
                 422: error("Not a valid Kudu hook"), 503: STORE_DOWN}),
    ("GET", "/api/hooks"): operation(
        "Every Kudu hook", tag="kudu", security=ADMIN,
        answers={200: json_answer("The hooks, oldest first",
                                  {"type": "array", "items": ref("KuduHookView")}),
                 401: UNAUTHORIZED, 503: STORE_DOWN}),
    ("GET", "/api/hooks/{id}"): operation(
        "One Kudu hook with its last_* fields", tag="kudu", security=ADMIN,
        parameters=[_KUDU_ID],
        answers={200: json_answer("The hook", ref("KuduHookView")), 401: UNAUTHORIZED,
                 404: error("No hook has this id"), 503: STORE_DOWN}),
    ("DELETE", "/api/hooks/{id}"): operation(
        "Unsubscribe a Kudu hook", tag="kudu", security=ADMIN, parameters=[_KUDU_ID],
        answers={200: json_answer("The hook as it was; `null` if there was none (Kudu "
                                  "answers 200 whatever the id)",
                                  {"oneOf": [ref("KuduHookView"), {"type": "null"}]}),
                 401: UNAUTHORIZED, 503: STORE_DOWN}),
    ("POST", "/api/hooks/hooks/publish/{event}"): _KUDU_PUBLISH,
    ("POST", "/api/hooks/publish/{event}"): _KUDU_PUBLISH,
    # -- Dockership ------------------------------------------------------------------------
    ("GET", "/rest/projects"): operation(
        "Chains as Dockership projects (no secrets)", tag="dockership", security=ADMIN,
        answers={200: json_answer("Projects by name", {
            "type": "object", "additionalProperties": ref("DockershipProject")}),
            401: UNAUTHORIZED, 503: STORE_DOWN}),
    ("GET", "/rest/status"): operation(
        "Every chain's status, as Dockership's StatusResult", tag="dockership",
        security=ADMIN,
        answers={200: json_answer("Statuses by chain", {
            "type": "object", "additionalProperties": ref("DockershipStatus")}),
            401: UNAUTHORIZED, 503: STORE_DOWN}),
    ("GET", "/rest/status/{chain}"): operation(
        "One chain's status", tag="dockership", security=ADMIN, parameters=[_CHAIN],
        answers={200: json_answer("The status", ref("DockershipStatus")), 401: UNAUTHORIZED,
                 404: NO_CHAIN, 503: STORE_DOWN}),
    **_trigger_routes(),
    **_dockercloud_v1_routes(),
    # -- the web UI (a browser page with its own session cookie) ---------------------------
    ("GET", "/ui"): operation("The web UI", tag="ui", security=NO_AUTH,
                              answers={200: html("The page (it asks to log in)")}),
    ("GET", "/ui/deliveries/{id}"): operation(
        "The web UI, on one delivery", tag="ui", security=NO_AUTH, parameters=[_DELIVERY_ID],
        answers={200: html("The page")}),
    ("GET", "/ui/static/{name}"): operation(
        "The page's own script and style", tag="ui", security=NO_AUTH,
        parameters=[path_parameter("name", "A file of the page")],
        answers={200: {"description": "The file"}, 404: error("No such file")}),
    ("POST", "/ui/login"): operation(
        "Start a session with the admin token", tag="ui", security=NO_AUTH,
        body=json_body({"type": "object", "required": ["token"],
                        "properties": {"token": {"type": "string"}}},
                       '{"token": "<admin_token>"}'),
        answers={200: json_answer("The session (cookie set)", ref("UiSession")),
                 400: BAD_JSON, 401: error("Not the admin token"), 413: TOO_LARGE,
                 415: error("The token must come as JSON")}),
    ("POST", "/ui/logout"): operation(
        "End the session in this browser", tag="ui", security=NO_AUTH,
        answers={204: {"description": "Logged out"}, 401: SESSION_ONLY,
                 403: error("The session's CSRF token is missing")}),
    ("GET", "/ui/api/session"): operation(
        "The session's CSRF token and filters", tag="ui", security=NO_AUTH,
        answers={200: json_answer("The session", ref("UiSession")), 401: SESSION_ONLY}),
    ("GET", "/ui/api/history"): operation(
        "GET /history for the page's session", tag="ui", security=NO_AUTH,
        answers={200: json_answer("One page", ref("HistoryPage")), 401: SESSION_ONLY,
                 400: error("A query parameter is not valid")}),
    ("GET", "/ui/api/history/{id}"): operation(
        "GET /history/{id} for the page's session", tag="ui", security=NO_AUTH,
        parameters=[_DELIVERY_ID],
        answers={200: json_answer("The delivery", ref("Delivery")), 401: SESSION_ONLY,
                 404: error("No delivery has this id")}),
    ("POST", "/ui/api/history/{id}/redeliver"): operation(
        "Redeliver from the page (needs the CSRF token)", tag="ui", security=NO_AUTH,
        parameters=[_DELIVERY_ID],
        answers={202: json_answer("The new delivery", ref("Accepted")), 401: SESSION_ONLY,
                 403: error("The session's CSRF token is missing"),
                 404: error("No delivery has this id")}),
    ("POST", "/ui/api/history/redeliver"): operation(
        "Redeliver the page's filtered list (needs the CSRF token)", tag="ui",
        security=NO_AUTH, body=json_body(ref("RedeliveryFilter"), "As POST /history/redeliver"),
        answers={200: json_answer("A dry run: how many match", ref("Count")),
                 202: json_answer("The new deliveries", ref("Redelivered")),
                 401: SESSION_ONLY, 403: error("The session's CSRF token is missing"),
                 422: error("The filter is not valid, or more than 10 000 match")}),
    ("GET", "/ui/api/overview"): operation(
        "The last 24 hours: deliveries per hour by outcome, and every target", tag="ui",
        security=NO_AUTH,
        answers={200: json_answer("The overview", {
            "type": "object", "required": ["hours", "targets", "sample"],
            "properties": {
                "hours": {"type": "array", "items": {
                    "type": "object", "required": ["hour", "success", "failure", "error",
                                                   "running", "pending"],
                    "properties": {"hour": _TIME_REF, "success": {"type": "integer"},
                                   "failure": {"type": "integer"},
                                   "error": {"type": "integer"},
                                   "running": {"type": "integer"},
                                   "pending": {"type": "integer"}}}},
                "targets": {"type": "array", "items": {"allOf": [ref("TargetState"), {
                    "type": "object",
                    "required": ["attempts", "success_rate", "p50_ms", "p95_ms"],
                    "properties": {"attempts": {"type": "integer"},
                                   "success_rate": {"type": ["number", "null"]},
                                   "p50_ms": {"type": ["number", "null"]},
                                   "p95_ms": {"type": ["number", "null"]}}}]}},
                "sample": {"type": "integer",
                           "description": "attempt statistics are over at most this many "
                                          "of the latest attempts"}}}),
                 401: SESSION_ONLY}),
    ("POST", "/ui/api/targets/{chain}/{target}/pause"): operation(
        "Pause a target from the page (needs the CSRF token)", tag="ui", security=NO_AUTH,
        parameters=[_CHAIN, _TARGET],
        answers={200: json_answer("The target now", ref("TargetState")), 401: SESSION_ONLY,
                 403: error("The session's CSRF token is missing"),
                 404: error("The chain has no such target")}),
    ("POST", "/ui/api/targets/{chain}/{target}/resume"): operation(
        "Resume a target from the page (needs the CSRF token)", tag="ui", security=NO_AUTH,
        parameters=[_CHAIN, _TARGET],
        answers={200: json_answer("The target now", ref("TargetState")), 401: SESSION_ONLY,
                 403: error("The session's CSRF token is missing"),
                 404: error("The chain has no such target")}),
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
    "Reloaded": {
        "type": "object", "required": ["version", "changed", "chains", "restart_needed"],
        "properties": {
            "version": {"type": "string", "description": "a digest of the configuration"},
            "changed": {"type": "boolean"},
            "chains": {"type": "array", "items": {"type": "string"}},
            "restart_needed": {"type": "array", "items": {"type": "string"},
                               "description": "keys that changed but apply only after a "
                                              "restart ([server], [store] url, ...)"}}},
    "Accepted": {
        "type": "object", "required": ["id", "status_url"],
        "properties": {"id": {"type": "string"}, "status_url": {"type": "string"},
                       "duplicate": {"type": "boolean"}, "merged": {"type": "integer"},
                       "events": {"type": "array", "items": {"type": "object"},
                                  "description": "A registry's events, one by one"}},
    },
    "KuduHookView": {
        "type": "object", "required": ["id", "url", "event"],
        "properties": {
            "id": {"type": "integer"}, "url": {"type": "string"}, "event": {"type": "string"},
            "insecure_ssl": {"type": "boolean"}, "chain": _OPTIONAL_TEXT,
            "last_datetime": _OPTIONAL_TIME, "last_status": _OPTIONAL_TEXT,
            "last_reason": _OPTIONAL_TEXT, "last_context": _OPTIONAL_TEXT,
        },
    },
    "TriggerView": {
        "type": "object", "required": ["url", "name", "operation", "resource_uri"],
        "properties": {"url": {"type": "string"}, "name": {"type": "string"},
                       "operation": {"type": "string"}, "resource_uri": {"type": "string"},
                       "chain": {"type": "string"}, "created_at": _TIME},
    },
    "TriggerList": {
        "type": "object", "required": ["meta", "objects"],
        "properties": {"meta": {"type": "object"},
                       "objects": {"type": "array", "items": ref("TriggerView")}},
    },
    "DockershipProject": {
        "type": "object", "description": "Dockership's Project (core/project.go), and "
        "relay's Environment, Repositories, Concurrency and Targets",
        "required": ["Name", "Repository", "Environments", "EnvironmentNames", "TaskStatus",
                     "WebHook", "Environment"],
        "properties": {"Name": {"type": "string"}, "Repository": {"type": "string"},
                       "Environments": {"type": "object"},
                       "EnvironmentNames": {"type": "array", "items": {"type": "string"}},
                       "TaskStatus": {"type": "object"}, "WebHook": {"type": "string"},
                       "Environment": {"type": "string"}}},
    "DockershipStatus": {
        "type": "object", "description": "Dockership's StatusResult "
        "(http/handle_status.go); each Status entry a StatusRecord and relay's Last* keys",
        "required": ["Project", "Status", "Error"],
        "properties": {"Project": ref("DockershipProject"),
                       "Status": {"type": "object", "additionalProperties": {
                           "type": "object",
                           "required": ["LastRevisionLabel", "Environment", "LastRevision",
                                        "RunningContainers", "Containers"]}},
                       "Error": {"type": ["array", "null"]}}},
    "TastypieMeta": {
        "type": "object", "required": ["limit", "next", "offset", "previous", "total_count"],
        "properties": {"limit": {"type": "integer"}, "next": _OPTIONAL_TEXT,
                       "offset": {"type": "integer"}, "previous": _OPTIONAL_TEXT,
                       "total_count": {"type": "integer"}}},
    "ServiceView": {
        "type": "object", "description": "A chain as a Docker Cloud service",
        "required": ["uuid", "resource_uri", "name", "state"],
        "properties": {"uuid": {"type": "string", "format": "uuid"},
                       "resource_uri": {"type": "string"}, "name": {"type": "string"},
                       "image_name": {"type": "string"}, "state": {"type": "string"},
                       "targets": {"type": "array", "items": {"type": "string"}}}},
    "ServiceTrigger": {
        "type": "object", "description": "A trigger as Docker Cloud shows it: relative paths",
        "required": ["url", "name", "operation", "resource_uri"],
        "properties": {"url": {"type": "string"}, "name": {"type": "string"},
                       "operation": {"type": "string"}, "resource_uri": {"type": "string"},
                       "chain": {"type": "string"}, "created_at": _TIME}},
    "UiSession": {"type": "object", "required": ["csrf", "expires_at"],
                  "properties": {"csrf": {"type": "string"}, "expires_at": _TIME,
                                 "chains": {"type": "array", "items": {"type": "string"}},
                                 "services": {"type": "object", "description": "each chain's "
                                              "Docker Cloud service UUID",
                                              "additionalProperties": {"type": "string"}},
                                 "states": {"type": "array", "items": {"type": "string"}}}},
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
                       "duration_ms": {"type": ["number", "null"]},
                       "error": _OPTIONAL_TEXT,
                       "response": {"oneOf": [{"type": "null"}, ref("Response")]}},
    },
    "Response": {
        "type": "object", "required": ["status", "headers", "body", "truncated"],
        "description": "What the target answered: a few headers and the first 4 KB of the "
                       "body, relay's own secrets redacted",
        "properties": {"status": {"type": "integer"},
                       "headers": {"type": "object",
                                   "additionalProperties": {"type": "string"}},
                       "body": {"type": "string"}, "truncated": {"type": "boolean"}}},
    "FromStep": {
        "type": "object", "additionalProperties": False,
        "properties": {"from_step": {"oneOf": [{"type": "integer", "minimum": 0},
                                               {"const": "failed"}]}}},
    "RedeliveryFilter": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "chain": {"type": "string"}, "repository": {"type": "string"},
            "tag": {"type": "string"},
            "state": {"enum": ["success", "failure", "error"]},
            "since": {"type": "string", "format": "date-time",
                      "description": "on received_at, inclusive"},
            "until": {"type": "string", "format": "date-time",
                      "description": "on received_at, exclusive"},
            "from_step": {"oneOf": [{"type": "integer", "minimum": 0},
                                    {"const": "failed"}]},
            "dry_run": {"type": "boolean"}}},
    "Count": {"type": "object", "required": ["count"],
              "properties": {"count": {"type": "integer"}}},
    "Redelivered": {"type": "object", "required": ["count", "ids"],
                    "properties": {"count": {"type": "integer"},
                                   "ids": {"type": "array", "items": {"type": "string"}}}},
    "TargetState": {
        "type": "object",
        "required": ["chain", "target", "state", "paused_by", "since",
                     "consecutive_failures", "last_error", "waiting"],
        "properties": {
            "chain": {"type": "string"}, "target": {"type": "string"},
            "state": {"enum": ["active", "paused"]},
            "paused_by": {"enum": ["relay", "operator", None]},
            "since": {"oneOf": [{"type": "null"}, _TIME]},
            "consecutive_failures": {"type": "integer"},
            "last_error": _OPTIONAL_TEXT,
            "waiting": {"type": "integer", "description": "steps waiting for it (paused)"}}},
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
    components = {_component_name(name): _component(name) for name in sorted(schemas.names())}
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
                "dockerCloudApiKey": {"type": "http", "scheme": "basic",
                                      "description": "Docker Cloud's `username:apikey`: any "
                                                     "user name, `[server] admin_token` as "
                                                     "the apikey"},
            },
        },
    }


def _component_name(name: str) -> str:
    """kudu-hook.json is the component KuduHook."""
    return "".join(part.title() for part in name.split("-"))


def _component(name: str) -> Fragment:
    """A schema of schemas/ as a component: Push for push.json. Its `$id` and `$schema` are
    dropped: inside the document, 2020-12 is the dialect already; its own `#/$defs/...`
    references are made to point inside the component."""
    schema = copy.deepcopy(schemas.schema(name))
    schema.pop("$id", None)
    schema.pop("$schema", None)
    rebased: Fragment = _rebase(schema, f"#/components/schemas/{_component_name(name)}")
    return rebased


def _rebase(value: Any, base: str) -> Any:
    if isinstance(value, dict):
        return {key: (base + item[1:] if key == "$ref" and isinstance(item, str)
                      and item.startswith("#/") else _rebase(item, base))
                for key, item in value.items()}
    if isinstance(value, list):
        return [_rebase(item, base) for item in value]
    return value

