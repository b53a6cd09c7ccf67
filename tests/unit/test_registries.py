"""relay/registries: registries' notifications as Docker Hub pushes, table by table (pure)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from support import registry_payloads as rp

from relay import config, registries, schemas
from relay.registries import Sender, Skip, TagPush, hubshape

MEDIA_TYPES = config.MANIFEST_MEDIA_TYPES


def _translate(sender: Sender, document: dict[str, Any],
               media_types: tuple[str, ...] = MEDIA_TYPES,
               request_key: str | None = None) -> list[registries.Item]:
    assert schemas.validate(registries.schema_of(sender), document) == []
    return registries.translate(sender, document, media_types, request_key)


@pytest.mark.parametrize(("content_type", "document", "sender"), [
    (rp.V1, rp.envelope(rp.REAL_MANIFEST), Sender.DISTRIBUTION),
    (rp.V2, rp.DOCS_V2_PUSH, Sender.DISTRIBUTION),
    ("application/vnd.docker.distribution.events.v1+json", {}, Sender.DISTRIBUTION),
    ("application/json", rp.DOCS_PULL, Sender.DISTRIBUTION),
    ("application/json", rp.HARBOR_PUSH, Sender.HARBOR),
    ("application/json", rp.HARBOR_PULL, Sender.HARBOR),
    ("application/cloudevents+json", rp.HARBOR_CLOUD_PUSH, Sender.HARBOR),
    ("application/json", rp.HARBOR_CLOUD_PUSH, Sender.HARBOR),
    ("application/json", {"push_data": {}, "repository": {}}, Sender.DOCKER_HUB),
    ("", {"push_data": {}, "events": []}, Sender.DOCKER_HUB),
    ("application/json", {"anything": "else"}, Sender.DOCKER_HUB),
    ("application/cloudevents+json", {"specversion": "1.0", "type": "com.example.x"},
     Sender.DOCKER_HUB),
])
def test_the_sender_is_told_by_content_type_then_by_shape(
        content_type: str, document: dict[str, Any], sender: Sender) -> None:
    assert registries.recognise(content_type, document) is sender


def test_a_tag_push_of_a_real_registry_becomes_a_docker_hub_push() -> None:
    (push,) = _translate(Sender.DISTRIBUTION, rp.envelope(rp.REAL_MANIFEST))

    assert isinstance(push, TagPush)
    assert push.pointer == "/events/0"
    assert push.event == rp.REAL_MANIFEST["id"]
    assert push.key == f"distribution:{rp.REAL_MANIFEST['id']}"
    assert push.payload == {
        "push_data": {"pushed_at": 1795490253, "pusher": "", "tag": "v1",
                      "digest": rp.DIGEST, "media_type": rp.OCI_MANIFEST,
                      "resource_url": "registry.example.com:5000/team/app:v1"},
        "repository": {"name": "app", "namespace": "team", "owner": "team",
                       "repo_name": "team/app",
                       "repo_url": "http://registry.example.com:5000/v2/team/app/tags/list",
                       "registry": "registry.example.com:5000"},
    }
    assert schemas.validate("push", push.payload) == []


def test_the_actor_is_the_pusher_and_a_nested_name_splits_at_the_last_slash() -> None:
    (push,) = _translate(Sender.DISTRIBUTION, rp.envelope(
        rp.event(actor="ci-bot", repository="acme/platform/api", tag="1.2.3")))

    assert isinstance(push, TagPush)
    assert push.payload["push_data"]["pusher"] == "ci-bot"
    assert push.payload["repository"].items() >= {
        "repo_name": "acme/platform/api", "namespace": "acme/platform", "name": "api"}.items()
    (single,) = _translate(Sender.DISTRIBUTION, rp.envelope(rp.event(repository="alpine")))
    assert isinstance(single, TagPush)
    assert single.payload["repository"]["namespace"] == ""
    assert single.payload["repository"]["name"] == "alpine"


@pytest.mark.parametrize(("event", "reason"), [
    (rp.DOCS_PULL["events"][0], "a pull event makes no delivery"),
    (rp.REAL_LAYER, "a push of a blob makes no delivery"),
    (rp.REAL_MOUNT, "a mount event makes no delivery"),
    (rp.REAL_DELETE_MANIFEST, "a delete event makes no delivery"),
    (rp.REAL_DELETE_TAG, "a delete event makes no delivery"),
    (rp.REAL_PLATFORM, "a manifest pushed by digest alone, without a tag"),
    (rp.DOCS_V2_PUSH["events"][0], "a manifest pushed by digest alone, without a tag"),
    (rp.DOCS_V2_PUSH["events"][1], "a push of a blob makes no delivery"),
    (rp.event(media_type="application/vnd.docker.distribution.manifest.v1+prettyjws"),
     "a push of media type application/vnd.docker.distribution.manifest.v1+prettyjws"),
])
def test_everything_but_a_manifest_push_with_a_tag_is_skipped(event: dict[str, Any],
                                                               reason: str) -> None:
    (item,) = _translate(Sender.DISTRIBUTION, rp.envelope(event))

    assert isinstance(item, Skip)
    assert item.reason.startswith(reason)
    assert item.event == event["id"]


def test_a_multi_platform_push_makes_one_push_of_the_index() -> None:
    items = _translate(Sender.DISTRIBUTION, rp.envelope(
        rp.REAL_LAYER, rp.REAL_PLATFORM, rp.REAL_LAYER, rp.REAL_PLATFORM, rp.REAL_INDEX))

    pushes = [item for item in items if isinstance(item, TagPush)]
    assert len(items) == 5
    assert [p.pointer for p in pushes] == ["/events/4"]
    assert pushes[0].payload["push_data"].items() >= {
        "tag": "v2", "digest": rp.INDEX_DIGEST, "media_type": rp.OCI_INDEX}.items()


@pytest.mark.parametrize(("media_types", "pushed"), [
    (MEDIA_TYPES, [rp.OCI_MANIFEST, rp.OCI_INDEX, rp.DOCKER_MANIFEST,
                   "application/vnd.docker.distribution.manifest.list.v2+json"]),
    ((rp.OCI_INDEX,), [rp.OCI_INDEX]),
    (("application/vnd.oci.*",), [rp.OCI_MANIFEST, rp.OCI_INDEX]),
    (("application/vnd.docker.*",), [rp.DOCKER_MANIFEST,
                                     "application/vnd.docker.distribution.manifest.list.v2+json",
                                     "application/vnd.docker.container.image.v1+json"]),
])
def test_the_chains_media_types_choose_which_manifests_count(
        media_types: tuple[str, ...], pushed: list[str]) -> None:
    kinds = [rp.OCI_MANIFEST, rp.OCI_INDEX, rp.DOCKER_MANIFEST,
             "application/vnd.docker.distribution.manifest.list.v2+json",
             "application/vnd.docker.container.image.v1+json",
             "application/octet-stream"]
    items = _translate(Sender.DISTRIBUTION, rp.envelope(
        *(rp.event(id=f"e{n}", media_type=kind) for n, kind in enumerate(kinds))),
        media_types)

    assert [i.payload["push_data"]["media_type"] for i in items if isinstance(i, TagPush)] == pushed


def test_event_ids_are_the_keys_and_events_without_one_get_a_fingerprint() -> None:
    (with_id,) = _translate(Sender.DISTRIBUTION, rp.envelope(rp.REAL_MANIFEST))
    nameless = {k: v for k, v in rp.REAL_MANIFEST.items() if k != "id"}
    (first,) = _translate(Sender.DISTRIBUTION, rp.envelope(nameless))
    reordered = dict(reversed(list(copy.deepcopy(nameless).items())))
    (again,) = _translate(Sender.DISTRIBUTION, rp.envelope(reordered))
    (other,) = _translate(Sender.DISTRIBUTION, rp.envelope({**nameless, "timestamp":
                                                            "2026-11-24T03:17:34Z"}))
    (keyed,) = _translate(Sender.DISTRIBUTION, rp.envelope(nameless), request_key="k-1")
    (own_wins,) = _translate(Sender.DISTRIBUTION, rp.envelope(rp.REAL_MANIFEST),
                             request_key="k-1")

    assert isinstance(with_id, TagPush)
    assert isinstance(first, TagPush)
    assert isinstance(again, TagPush)
    assert isinstance(other, TagPush)
    assert isinstance(keyed, TagPush)
    assert isinstance(own_wins, TagPush)
    assert with_id.key == f"distribution:{rp.REAL_MANIFEST['id']}"
    assert first.key.startswith("distribution:sha256:")
    assert first.key == again.key != other.key
    assert keyed.key == "distribution:request:k-1"
    assert own_wins.key == with_id.key


def test_harbors_default_push_becomes_a_docker_hub_push() -> None:
    (push,) = _translate(Sender.HARBOR, rp.HARBOR_PUSH)

    assert isinstance(push, TagPush)
    assert push.pointer == "/event_data/resources/0"
    assert push.event == ""
    assert push.key.startswith("harbor:sha256:")
    assert push.key.endswith("#latest")
    assert push.payload == {
        "push_data": {"pushed_at": 1586922308, "pusher": "admin", "tag": "latest",
                      "digest": rp.HARBOR_PUSH["event_data"]["resources"][0]["digest"],
                      "resource_url": "hub.harbor.com/test-webhook/debian:latest"},
        "repository": {"name": "debian", "namespace": "test-webhook", "owner": "test-webhook",
                       "repo_name": "test-webhook/debian", "registry": "hub.harbor.com",
                       "date_created": 1586922308, "is_private": True},
    }
    assert schemas.validate("push", push.payload) == []
    (again,) = _translate(Sender.HARBOR, copy.deepcopy(rp.HARBOR_PUSH))
    assert isinstance(again, TagPush)
    assert again.key == push.key


def test_harbors_cloudevents_push_is_keyed_by_its_event_id() -> None:
    (default,) = _translate(Sender.HARBOR, rp.HARBOR_PUSH)
    (push,) = _translate(Sender.HARBOR, rp.HARBOR_CLOUD_PUSH)

    assert isinstance(push, TagPush)
    assert isinstance(default, TagPush)
    assert push.pointer == "/data/resources/0"
    assert push.key == f"harbor:{rp.HARBOR_CLOUD_PUSH['id']}#latest"
    assert push.payload == default.payload


@pytest.mark.parametrize(("document", "reason"), [
    (rp.HARBOR_PULL, "a Harbor PULL_ARTIFACT event makes no delivery"),
    ({**rp.HARBOR_PULL, "type": "DELETE_ARTIFACT"},
     "a Harbor DELETE_ARTIFACT event makes no delivery"),
    ({"type": "SCANNING_COMPLETED", "occur_at": 1586922308, "operator": "auto",
      "event_data": {"resources": [{"digest": "sha256:abc", "tag": "latest",
                                    "scan_overview": {}}],
                     "repository": {"name": "debian", "namespace": "test-webhook",
                                    "repo_full_name": "test-webhook/debian"}}},
     "a Harbor SCANNING_COMPLETED event makes no delivery"),
    ({**rp.HARBOR_CLOUD_PUSH, "type": "harbor.artifact.deleted"},
     "a Harbor harbor.artifact.deleted event makes no delivery"),
    (rp.harbor_push(tag=rp.DIGEST), "an artifact pushed by digest alone"),
    (rp.harbor_push(tag=""), "an artifact pushed by digest alone"),
])
def test_harbor_events_other_than_a_tag_push_are_skipped(document: dict[str, Any],
                                                         reason: str) -> None:
    (item,) = _translate(Sender.HARBOR, document)

    assert isinstance(item, Skip)
    assert item.reason.startswith(reason)


@pytest.mark.parametrize(("sender", "document", "paths"), [
    (Sender.DISTRIBUTION, {"events": "none"}, {"/events"}),
    (Sender.DISTRIBUTION, {}, {"/events"}),
    (Sender.DISTRIBUTION, rp.envelope({"action": "push"}),
     {"/events/0/target", "/events/0/timestamp"}),
    (Sender.DISTRIBUTION, rp.envelope({k: v for k, v in rp.REAL_MANIFEST.items()
                                       if k != "timestamp"}), {"/events/0/timestamp"}),
    (Sender.DISTRIBUTION, rp.envelope(rp.event(repository="Team/App")),
     {"/events/0/target/repository"}),
    (Sender.DISTRIBUTION, rp.envelope(rp.event(tag="-bad")), {"/events/0/target/tag"}),
    (Sender.DISTRIBUTION, rp.envelope(rp.event(timestamp="yesterday")),
     {"/events/0/timestamp"}),
    (Sender.DISTRIBUTION, rp.envelope(rp.event(media_type=None)),
     {"/events/0/target/mediaType"}),
    (Sender.HARBOR, {**rp.HARBOR_PUSH, "occur_at": "now"}, {"/occur_at"}),
    (Sender.HARBOR, {"type": "PUSH_ARTIFACT"}, {"/occur_at", "/event_data"}),
    (Sender.HARBOR, {**rp.HARBOR_PUSH, "event_data": {"resources": []}},
     {"/event_data/repository"}),
    (Sender.HARBOR, rp.harbor_push(digest="md5 of it"),
     {"/event_data/resources/0/digest"}),
    (Sender.HARBOR, {k: v for k, v in rp.HARBOR_CLOUD_PUSH.items() if k != "id"}, {"/id"}),
    (Sender.HARBOR, {**rp.HARBOR_CLOUD_PUSH, "time": 1586922308}, {"/time"}),
])
def test_what_relay_reads_of_a_push_is_checked_by_the_schema(
        sender: Sender, document: dict[str, Any], paths: set[str]) -> None:
    details = schemas.validate(registries.schema_of(sender), document)

    assert {d.path for d in details} == paths


def test_pulls_deletes_and_mounts_are_taken_as_they_come() -> None:
    # The registry resends a refused envelope and holds up later ones behind it: what
    # relay does not read is not checked.
    odd = {"id": "x", "action": "pull", "target": {"repository": "ANY thing", "tag": "-"}}

    assert schemas.validate("distribution-events", rp.envelope(
        odd, rp.REAL_DELETE_TAG, rp.REAL_DELETE_MANIFEST, rp.REAL_MOUNT)) == []
    assert schemas.validate("harbor-event", {"type": "QUOTA_WARNING", "occur_at": 1,
                                             "event_data": {"custom": True}}) == []


def test_an_impossible_date_is_refused_at_its_pointer() -> None:
    document = rp.envelope(rp.event(timestamp="2026-02-31T00:00:00Z"))

    with pytest.raises(registries.Invalid) as raised:
        _translate(Sender.DISTRIBUTION, document)
    assert raised.value.pointer == "/events/0/timestamp"


@pytest.mark.parametrize(("timestamp", "seconds"), [
    ("2006-01-02T15:04:05Z", 1136214245),
    ("2026-11-24T03:17:33.794836043Z", 1795490253),
    ("2016-03-09T14:44:26.402973972-08:00", 1457563466),
    ("2016-03-09t22:44:26z", 1457563466),
    ("2016-03-09 22:44:26.999999999+00:00", 1457563466),
])
def test_times_are_whole_seconds_like_docker_hubs(timestamp: str, seconds: int) -> None:
    assert hubshape.epoch_seconds(timestamp) == seconds


@pytest.mark.parametrize(("value", "is_tag"), [
    ("v1", True), ("latest", True), ("1.2.3-rc_1", True), ("_x", True), ("a" * 128, True),
    ("a" * 129, False), ("", False), ("-x", False), (".x", False), (rp.DIGEST, False),
    (None, False), (3, False),
])
def test_a_digest_in_the_tags_place_is_no_tag(value: object, is_tag: bool) -> None:
    assert hubshape.is_tag(value) is is_tag
