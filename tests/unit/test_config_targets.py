"""relay.toml for shaped targets, tags, order and the proxy: what is read, and every mistake
named by its key."""

from __future__ import annotations

import re

import pytest
from support import minimal_config

from relay import config, errors


def _target(extra: str, environ: dict[str, str] | None = None) -> config.Target:
    text = minimal_config().replace('url = "http://127.0.0.1:9001/hook"',
                                    f'url = "http://127.0.0.1:9001/hook"\n  {extra}')
    return config.parse(text, environ=environ or {}).chains[0].targets[0]


def test_headers_are_read_with_their_values_from_the_environment() -> None:
    text = minimal_config().replace(
        'url = "http://127.0.0.1:9001/hook"',
        'url = "http://127.0.0.1:9001/hook"\n'
        '  headers = { Authorization = "Bearer ${GH_TOKEN}", X-Custom = "v" }')
    settings = config.parse(text, environ={"GH_TOKEN": "ghp_from_the_env_123"})

    target = settings.chains[0].targets[0]
    assert target.headers == (("Authorization", "Bearer ghp_from_the_env_123"),
                              ("X-Custom", "v"))
    # Header values are secrets, whether they came from the environment or not.
    assert {"Bearer ghp_from_the_env_123", "ghp_from_the_env_123", "v"} <= settings.secrets


def test_method_body_and_tags_are_read() -> None:
    target = _target('method = "put"\n  body = "{tag: payload.push_data.tag}"\n'
                     '  tags = ["v*", "latest"]')

    assert target.method == "PUT"
    assert target.body == "{tag: payload.push_data.tag}"
    assert target.body_expression.search({"payload": {"push_data": {"tag": "v1"}}}) == {
        "tag": "v1"}
    assert target.tags == ("v*", "latest")
    assert [target.takes(tag) for tag in ("v1.2", "latest", "edge")] == [True, True, False]
    assert not target.takes("")  # a push without a tag matches only "*"


def test_chain_tags_and_order() -> None:
    text = minimal_config(chain='tags = ["*"]\norder = "none"\nconcurrency = 3')
    chain = config.parse(text).chains[0]

    assert chain.order is config.Order.NONE
    assert chain.concurrency == 3
    assert chain.takes("")
    assert chain.takes("anything")


def test_a_step_of_a_target_that_does_not_take_the_tag_is_planned_skipped() -> None:
    text = minimal_config().replace(
        '  name = "ci"\n  url = "http://127.0.0.1:9001/hook"',
        '  name = "ci"\n  url = "http://127.0.0.1:9001/hook"\n  tags = ["v*"]\n'
        '  [[chain.target]]\n  name = "all"\n  url = "http://127.0.0.1:9002/hook"')
    chain = config.parse(text).chains[0]

    assert chain.steps_for("v2") == [("ci", "http://127.0.0.1:9001/hook", None),
                                     ("all", "http://127.0.0.1:9002/hook", None)]
    (name, _, reason), other = chain.steps_for("latest")
    assert name == "ci"
    assert reason == "not sent: target ci takes tags v*, and this push is of tag latest"
    assert other[2] is None


def test_the_proxy_is_read_and_its_credentials_are_secrets() -> None:
    text = minimal_config() + '\n[outbound]\nproxy = "http://relay:pr0xy-pass@10.0.0.3:3128"\n'
    settings = config.parse(text)

    assert settings.outbound.proxy == "http://relay:pr0xy-pass@10.0.0.3:3128"
    assert settings.outbound.trust_env is False
    assert "pr0xy-pass" in settings.secrets


@pytest.mark.parametrize(("extra", "message"), [
    ('headers = { Content-Type = "text/plain" }',
     "chain[0].target[0].headers.Content-Type: relay sets this header itself"),
    ('headers = { webhook-id = "x" }',
     "chain[0].target[0].headers.webhook-id: relay sets this header itself"),
    ('headers = { host = "x" }', "chain[0].target[0].headers.host: relay sets this header"),
    ('headers = { "bad name" = "x" }',
     "chain[0].target[0].headers.bad name: 'bad name' is not an HTTP header name"),
    ('headers = { X-A = "one\\ntwo" }',
     "chain[0].target[0].headers.X-A: must be one line"),
    ('headers = { X-A = 1 }', "chain[0].target[0].headers.X-A: must be a string"),
    ('headers = { X-A = "a", x-a = "b" }',
     "chain[0].target[0].headers.x-a: is given twice"),
    ('headers = "Authorization: x"', "chain[0].target[0].headers: must be a table"),
    ('body = "{a: b"', "chain[0].target[0].body: not a JMESPath expression: it ends too early"),
    ('body = "payload.}"',
     "chain[0].target[0].body: not a JMESPath expression: unexpected '}' at character 9"),
    ('body = "nosuch(payload)"', "chain[0].target[0].body: Unknown function: nosuch()"),
    ('body = "join(payload)"', "chain[0].target[0].body: Expected 2 arguments for function"),
    ('body = ""', "chain[0].target[0].body: must be a JMESPath expression, got an empty"),
    ('method = "GET"', "chain[0].target[0].method: must be POST, PUT or PATCH, got 'GET'"),
    ('tags = []', "chain[0].target[0].tags: must name at least one pattern"),
    ('tags = [""]', "chain[0].target[0].tags: '' is not a tag pattern"),
])
def test_target_mistakes_name_their_key(extra: str, message: str) -> None:
    with pytest.raises(errors.ConfigError, match=re.escape(message)):
        _target(extra)


@pytest.mark.parametrize(("text", "message"), [
    (minimal_config(chain='order = "random"'),
     'chain[0].order: must be one of "tag", "chain", "none", got \'random\''),
    (minimal_config(chain="concurrency = 0"), "chain[0].concurrency: must be at least 1"),
    (minimal_config(chain="tags = 7"), "chain[0].tags: must be a string or a list"),
    (minimal_config() + '\n[outbound]\nproxy = "https://proxy:3128"\n',
     "outbound.proxy: must be an http:// proxy URL"),
    (minimal_config() + '\n[outbound]\nproxy = "proxy:3128"\n',
     "outbound.proxy: must be an absolute http(s) URL"),
    (minimal_config() + '\n[outbound]\ntrust_env = "yes"\n',
     "outbound.trust_env: must be true or false"),
])
def test_chain_and_outbound_mistakes_name_their_key(text: str, message: str) -> None:
    with pytest.raises(errors.ConfigError, match=re.escape(message)):
        config.parse(text)


def test_a_header_value_from_the_environment_must_be_set() -> None:
    with pytest.raises(errors.ConfigError, match=r"chain\[0\]\.target\[0\]\.headers\."
                                                 r"Authorization: environment variable "
                                                 r"GH_TOKEN is not set"):
        _target('headers = { Authorization = "Bearer ${GH_TOKEN}" }')
