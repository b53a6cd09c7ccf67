"""Hypothesis strategies for pushes and callbacks: valid, nearly valid and hostile bodies,
and an oracle that says what relay must make of each, written apart from relay's own code."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from relay import schemas

MAX_DEPTH = 64

# -- valid documents ------------------------------------------------------------------------

_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_finite = st.floats(allow_nan=False, allow_infinity=False)
_short_text = st.text(max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | _int64 | _finite | _short_text,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(_short_text, children, max_size=4),
    max_leaves=12)

_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_component = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
_repo_name = st.lists(_component, min_size=1, max_size=3).map("/".join)
_http_url = st.builds(
    "{}://{}.{}/{}".format, st.sampled_from(["http", "https", "HTTPS"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
    st.sampled_from(["com", "org", "example"]),
    st.from_regex(r"[A-Za-z0-9_/.-]{0,20}", fullmatch=True))
_maybe_text = st.none() | st.text(max_size=60)
_maybe_count = st.none() | st.integers(min_value=0, max_value=2**31)

_push_data = st.fixed_dictionaries(
    {"pushed_at": st.integers(min_value=0, max_value=2**40)
     | st.floats(min_value=0, max_value=1e12, allow_nan=False)},
    optional={"pusher": st.text(max_size=80), "tag": _tag,
              "images": st.lists(st.text(max_size=80), max_size=3),
              "digest": st.just("sha256:" + "ab" * 32)},
).filter(lambda data: "tag" in data or "images" in data)

_repository = st.fixed_dictionaries(
    {"repo_name": _repo_name},
    optional={"name": _maybe_text, "namespace": _maybe_text, "owner": _maybe_text,
              "description": _maybe_text, "full_description": _maybe_text,
              "dockerfile": _maybe_text, "repo_url": st.none() | _http_url,
              "comment_count": _maybe_count, "star_count": _maybe_count,
              "date_created": st.none() | st.integers(min_value=0, max_value=2**40),
              "is_official": st.none() | st.booleans(), "is_private": st.none() | st.booleans(),
              "is_trusted": st.none() | st.booleans(), "status": _maybe_text,
              "x-unknown": json_values})

valid_pushes = st.fixed_dictionaries(
    {"push_data": _push_data, "repository": _repository},
    optional={"callback_url": _http_url, "extra": json_values})

valid_callbacks = st.fixed_dictionaries(
    {"state": st.sampled_from(["success", "failure", "error"])},
    optional={"description": st.text(max_size=255), "context": st.text(max_size=100),
              "target_url": _http_url, "extra": json_values})


# -- nearly valid and hostile ---------------------------------------------------------------

_wrong_values = st.one_of(
    json_values, st.text(min_size=256, max_size=400), st.integers(max_value=-1),
    st.sampled_from(["-bad-tag", "not a url", "ftp://example.com/x", "", "NaN", "Ünïcödé/Repo",
                     "\u202e\u0000\ufeff", "../../etc/passwd", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "a" * 129]))


@st.composite
def nearly_valid(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A valid document with one thing broken: a key dropped, or a value swapped."""
    document = copy.deepcopy(draw(valid))
    holders = [document] + [v for v in document.values() if isinstance(v, dict)]
    holder = draw(st.sampled_from(holders))
    if not holder:
        return document
    key = draw(st.sampled_from(sorted(holder)))
    if draw(st.booleans()):
        del holder[key]
    else:
        holder[key] = draw(_wrong_values)
    return document


def _nested(depth: int) -> bytes:
    return b'{"push_data": {"pushed_at": 1, "tag": "x"}, "repository": {"repo_name": "a/b"},' \
           b' "deep": ' + b"[" * depth + b"]" * depth + b"}"


def _lone_surrogate(document: dict[str, Any]) -> bytes:
    # json.dumps writes the surrogate as the escape \ud800: valid JSON syntax, not I-JSON.
    broken = copy.deepcopy(document)
    broken["description"] = "before \ud800 after"
    return json.dumps(broken).encode()


def _huge(document: dict[str, Any], size: int) -> bytes:
    grown = copy.deepcopy(document)
    grown["description"] = "🚀" * size
    return json.dumps(grown, ensure_ascii=False).encode()


def bodies(valid: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """Request bodies: mostly valid and nearly valid documents, and every kind of garbage."""
    as_json = st.sampled_from([
        lambda d: json.dumps(d).encode(),
        lambda d: json.dumps(d, ensure_ascii=False).encode(),
    ])
    documents = st.one_of(valid, valid, nearly_valid(valid), json_values)
    return st.one_of(
        st.builds(lambda dump, d: dump(d), as_json, documents),
        st.binary(max_size=300),
        st.integers(min_value=1, max_value=3000).map(_nested),
        valid.map(_lone_surrogate),
        st.builds(_huge, valid, st.integers(min_value=100, max_value=3000)),
        st.builds(lambda d: json.dumps(d).encode("utf-16"), valid),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )


# -- the oracle -----------------------------------------------------------------------------


class Invalid(Exception):
    pass


def _reject_constant(name: str) -> Any:
    raise Invalid(f"{name} is not JSON")


def _check_value(value: Any, depth: int = 0) -> int:
    """Raise Invalid for what I-JSON forbids; return the nesting depth."""
    if isinstance(value, str):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            raise Invalid("lone surrogate")
        if "\x00" in value:
            raise Invalid("NUL, which relay refuses on every store (PostgreSQL cannot hold it)")
        return depth
    if isinstance(value, float) and not math.isfinite(value):
        raise Invalid("not finite")
    if isinstance(value, dict):
        for key in value:
            _check_value(key)
        return max([_check_value(v, depth + 1) for v in value.values()], default=depth + 1)
    if isinstance(value, list):
        return max([_check_value(v, depth + 1) for v in value], default=depth + 1)
    return depth


def expected(body: bytes, schema: str, max_body_bytes: int) -> tuple[str, Any]:
    """("valid", document) or ("invalid", the status class relay must answer with)."""
    if len(body) > max_body_bytes:
        return "invalid", 413
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        if _check_value(document) > MAX_DEPTH or not isinstance(document, dict):
            raise Invalid("too deep, or not an object")
    except (UnicodeDecodeError, ValueError, RecursionError, Invalid):
        return "invalid", 400
    validator = Draft202012Validator(schemas.schema(schema),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    if not validator.is_valid(document):
        return "invalid", 422
    return "valid", document


def canonical(document: Any) -> str:
    return json.dumps(document, sort_keys=True)
