"""relay.toml: the example works, and every mistake names its key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import minimal_config

from relay import config, errors
from relay.config.schedule import describe

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = minimal_config()


def test_the_example_config_is_the_design_example() -> None:
    settings = config.load(ROOT / "relay.toml")

    assert settings.server.port == 8080
    assert settings.server.public_url == "http://127.0.0.1:8080"
    assert settings.server.max_body_bytes == 1048576
    assert settings.store.url == "sqlite:///data/relay.db"
    assert settings.delivery.policy == config.SendPolicy(timeout=10, retry_for=86400,
                                                     callback_timeout=3600)
    assert settings.upstream.allowed_hosts == ("registry.hub.docker.com", "hub.docker.com")
    (chain,) = settings.chains
    assert chain.name == "testhook"
    assert chain.repositories == ("svendowideit/*",)
    unit_tests, deploy = chain.targets
    assert unit_tests.await_callback is True
    assert deploy.policy.timeout == 30
    assert deploy.policy.retry_for == 86400  # inherited from [delivery]
    assert deploy.secrets == ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",)
    assert "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" in settings.secrets
    assert "change-me-admin-token" in settings.secrets


def test_defaults_fill_what_is_left_out() -> None:
    settings = config.parse(MINIMAL)

    assert settings.server.host == "127.0.0.1"
    assert settings.chains[0].concurrency == 16
    assert settings.chains[0].order is config.Order.TAG
    assert settings.chains[0].targets[0].await_callback is True
    assert settings.chains[0].targets[0].policy == config.SendPolicy()


@pytest.mark.parametrize(("text", "message"), [
    (MINIMAL.replace('name = "ci"', 'name = "ci"\n  timout = 3'),
     "chain[0].target[0].timout: unknown key"),
    (MINIMAL.replace('url = "http://127.0.0.1:9001/hook"', 'url = "ftp://x"'),
     "chain[0].target[0].url: must be an absolute http(s) URL"),
    (MINIMAL.replace('name = "ci"', 'name = "ci"\n  timeout = "soon"'),
     "chain[0].target[0].timeout: must be a positive number of seconds"),
    (MINIMAL.replace('name = "ci"', 'name = "ci"\n  attempts = -1'),
     "chain[0].target[0].attempts: must be at least 0"),
    (MINIMAL.replace('name = "ci"', 'name = "ci"\n  retry_for = 0'),
     "chain[0].target[0].retry_for: 0 (no time limit) needs a positive attempts"),
    (MINIMAL.replace('name = "ci"', 'name = "ci"\n  schedule = []'),
     "chain[0].target[0].schedule: must be a non-empty list of durations"),
    (MINIMAL.replace('name = "ci"', 'name = "ci"\n  schedule = ["1s", "soon"]'),
     "chain[0].target[0].schedule[1]: must be a duration from 0 to 24h"),
    (MINIMAL.replace('name = "ci"', 'name = "ci"\n  schedule = ["1s"]\n  backoff_max = 9'),
     "chain[0].target[0].schedule: give either schedule or backoff_max, not both"),
    (MINIMAL.replace('token = "chain-token-0123456789"', 'token = "short"'),
     "chain[0].token: must be at least 16 characters long"),
    (MINIMAL.replace('admin_token = "admin-token-0123456789"', 'admin_token = ""'),
     "server.admin_token: must be at least 16 characters long"),
    (MINIMAL.replace('admin_token = "admin-token-0123456789"', ""),
     "server.admin_token: is required"),
    (MINIMAL + MINIMAL.split("[[chain]]")[1].join(["[[chain]]", ""]),
     "chain[1].name: 'main' is used twice"),
    (MINIMAL.replace("[server]", "[server]\nport = true"),
     "server.port: must be an integer, got True"),
    (MINIMAL.replace('name = "ci"', 'name = "ci"\n  secret = "not-whsec"'),
     "chain[0].target[0].secret: must start with 'whsec_'"),
    (MINIMAL.replace('name = "main"', 'name = "x y"'), "chain[0].name: 'x y' must be"),
    (MINIMAL.replace('name = "main"', 'name = "main"\ncoalesce = "soon"'),
     "chain[0].coalesce: must be zero or a positive number of seconds"),
    (MINIMAL.replace('name = "main"', 'name = "main"\ncoalesce = -1'),
     "chain[0].coalesce: must be zero or a positive number of seconds"),
    (MINIMAL.replace('name = "main"', 'name = "main"\nidempotency_window = 0'),
     "chain[0].idempotency_window: must be a positive number of seconds"),
    (MINIMAL.replace('name = "main"', 'name = "main"\nmedia_types = []'),
     "chain[0].media_types: must name at least one media type"),
    (MINIMAL.replace('name = "main"', 'name = "main"\nmedia_types = ["manifest"]'),
     "chain[0].media_types: 'manifest' is not a media type"),
])
def test_each_mistake_names_its_key(text: str, message: str) -> None:
    with pytest.raises(errors.ConfigError) as raised:
        config.parse(text, environ={})
    assert message in str(raised.value)


def test_a_toml_syntax_error_names_the_line() -> None:
    with pytest.raises(errors.ConfigError, match=r"line 4"):
        config.parse('[server]\nport = 1\n\nadmin_token = "unterminated\n')


def test_secrets_may_come_from_the_environment() -> None:
    text = MINIMAL.replace('"chain-token-0123456789"', '"${CHAIN_TOKEN}"')
    settings = config.parse(text, environ={"CHAIN_TOKEN": "from-the-environment-42"})

    assert settings.chains[0].token == "from-the-environment-42"
    assert "from-the-environment-42" in settings.secrets
    with pytest.raises(errors.ConfigError, match=r"chain\[0\]\.token: environment variable "
                                                 r"CHAIN_TOKEN is not set"):
        config.parse(text, environ={})


def test_a_type_error_on_a_secret_does_not_echo_it() -> None:
    text = MINIMAL.replace('"admin-token-0123456789"', "123456789012345678")
    with pytest.raises(errors.ConfigError) as raised:
        config.parse(text)
    assert "123456789012345678" not in str(raised.value)
    assert "server.admin_token: must be a string, got int" in str(raised.value)


def test_registry_keys_default_to_manifests_no_coalescing_and_a_day() -> None:
    chain = config.parse(MINIMAL).chains[0]
    assert chain.media_types == config.MANIFEST_MEDIA_TYPES
    assert "application/vnd.oci.image.index.v1+json" in chain.media_types
    assert chain.coalesce == 0
    assert chain.idempotency_window == 24 * 3600

    text = MINIMAL.replace('name = "main"', 'name = "main"\ncoalesce = "10s"\n'
                           'idempotency_window = "2h"\nmedia_types = "application/vnd.oci.*"')
    chain = config.parse(text).chains[0]
    assert chain.coalesce == 10
    assert chain.idempotency_window == 7200
    assert chain.media_types == ("application/vnd.oci.*",)


def test_durations_take_units() -> None:
    text = MINIMAL.replace('name = "ci"', 'name = "ci"\n  callback_timeout = "2h"\n'
                                          '  timeout = "1500ms"')
    policy = config.parse(text).chains[0].targets[0].policy
    assert policy.callback_timeout == 7200
    assert policy.timeout == 1.5


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relay", "check-config", "--config",
                           str(path)], capture_output=True, text=True, timeout=30)


def test_check_config_accepts_the_example() -> None:
    result = _check_config(ROOT / "relay.toml")

    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert ("  testhook/deploy: retries after 1s, 5s, 15s, 30s, 1m, 2m, 5m, 10m, 15m, 30m, "
            "then every 1h, for 1d (about 34 attempts); pauses after 10 failures in a row, "
            "probed every 60 s") in result.stdout


def test_check_config_refuses_a_broken_file_naming_the_key(tmp_path: Path) -> None:
    broken = tmp_path / "relay.toml"
    broken.write_text(MINIMAL.replace('url = "http://127.0.0.1:9001/hook"', "url = 42"))

    result = _check_config(broken)

    assert result.returncode == 2
    assert "chain[0].target[0].url: must be a string, got 42" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_reports_a_missing_file(tmp_path: Path) -> None:
    result = _check_config(tmp_path / "nope.toml")

    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_a_schedule_is_written_as_durations_and_backoff_keys_still_work() -> None:
    listed = config.parse(MINIMAL.replace('name = "ci"', 'name = "ci"\n  schedule = ["5s", "1m"]'))
    doubling = config.parse(MINIMAL.replace(
        'name = "ci"', 'name = "ci"\n  backoff_initial = 1\n  backoff_max = "10s"'))

    assert listed.chains[0].targets[0].policy.schedule == (5.0, 60.0)
    assert doubling.chains[0].targets[0].policy.schedule == (1.0, 2.0, 4.0, 8.0, 10.0)
    assert describe(listed.chains[0].targets[0].policy) == (
        "retries after 5s, then every 1m, for 1d (about 1442 attempts)")


def test_history_retention_takes_days_and_zero_keeps_everything() -> None:
    assert config.parse(MINIMAL).history.retention == 30 * 86400
    assert config.parse(MINIMAL + '[history]\nretention = "7d"\n').history.retention == 7 * 86400
    assert config.parse(MINIMAL + '[history]\nretention = "0"\n').history.retention == 0
    with pytest.raises(errors.ConfigError, match=r"history\.retention: must be zero or a pos"):
        config.parse(MINIMAL + '[history]\nretention = "a month"\n')
