"""deploy/: the compose file runs two relays on one PostgreSQL with one shared config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from relay import config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ENVIRONMENT = {"RELAY_PUBLIC_URL": "http://127.0.0.1:8081", "RELAY_ADMIN_TOKEN": "a" * 32,
               "RELAY_DB_PASSWORD": "secret-password", "RELAY_CHAIN_TOKEN": "c" * 20}


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_runs_two_relays_on_one_postgresql() -> None:
    services = _compose()["services"]

    relays = [name for name, service in services.items() if "build" in service]
    assert relays == ["relay-1", "relay-2"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert "healthcheck" in services["postgres"]
    for name in relays:
        service = services[name]
        assert service["build"]["context"] == ".."
        assert service["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        assert service["volumes"] == ["./relay.toml:/etc/relay/relay.toml:ro"]
        assert service["environment"]["RELAY_PUBLIC_URL"]
    ports = [services[name]["ports"] for name in relays]
    assert ports[0] != ports[1]


def test_the_shared_config_is_valid_and_uses_the_compose_postgresql() -> None:
    settings = config.load(DEPLOY / "relay.toml", ENVIRONMENT)

    assert settings.store.url == "postgresql://relay:secret-password@postgres:5432/relay"
    assert settings.server.host == "0.0.0.0"  # noqa: S104 - in a container, on purpose
    assert settings.server.public_url == ENVIRONMENT["RELAY_PUBLIC_URL"]
    # Secrets from the environment are redacted from the logs.
    assert {"secret-password", "a" * 32, "c" * 20} <= settings.secrets
