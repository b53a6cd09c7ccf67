"""Notifications as registries send them: from their documentation, and from a real
distribution registry 2.8.2 (Debian's docker-registry) pushed to with skopeo."""

from __future__ import annotations

import copy
from typing import Any

DIGEST = "sha256:2e21e65994c1c79a229afc5934207297261aa11d874278e601ba4e8a67264455"
BLOB_DIGEST = "sha256:b501389d780a79fcea877dfc244bcf30826a94b5c58d20a8c41dfa2037f8826b"
INDEX_DIGEST = "sha256:1dc864b87f70e4bf2b5aa64ba5b2e7d8c4d3f1b8a2e6c0b9d7f5a3e1c2b4d6f8"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

V1 = "application/vnd.docker.distribution.events.v1+json"
V2 = "application/vnd.docker.distribution.events.v2+json"

_REQUEST = {"id": "40b4d940-0890-4059-bee0-131b2cb1f15a", "addr": "127.0.0.1:36740",
            "host": "registry.example.com:5000", "method": "PUT", "useragent": "skopeo/1.9.3"}
_SOURCE = {"addr": "vm:5000", "instanceID": "3bae8dcf-47f9-4ecd-8cfa-712a0128f201"}


def event(action: str = "push", *, id: str = "c5ea6839-0818-4e6b-ae74-f51b7e77da09",
          media_type: str | None = OCI_MANIFEST, digest: str = DIGEST,
          repository: str = "team/app", tag: str | None = "v1", actor: str | None = None,
          timestamp: str = "2026-11-24T03:17:33.794836043Z", **target: Any) -> dict[str, Any]:
    """One event of a distribution registry, in the shape 2.8.2 sends (v1 envelope)."""
    kind = "blobs" if media_type == "application/octet-stream" else "manifests"
    described: dict[str, Any] = {
        "size": 345, "digest": digest, "length": 345, "repository": repository,
        "url": f"http://registry.example.com:5000/v2/{repository}/{kind}/{digest}"}
    if media_type is not None:
        described = {"mediaType": media_type, **described}
    if tag is not None:
        described["tag"] = tag
    described.update(target)
    return {"id": id, "timestamp": timestamp, "action": action, "target": described,
            "request": {**_REQUEST, "method": "PUT" if action == "push" else "GET"},
            "actor": {"name": actor} if actor else {}, "source": _SOURCE}


def envelope(*events: dict[str, Any]) -> dict[str, Any]:
    return {"events": list(events)}


# The pull example of the distribution documentation ("Work with notifications").
DOCS_PULL = envelope({
    "id": "320678d8-ca14-430f-8bb6-4ca139cd83f7",
    "timestamp": "2016-03-09T14:44:26.402973972-08:00",
    "action": "pull",
    "target": {
        "mediaType": DOCKER_MANIFEST,
        "digest": "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf",
        "size": 708, "length": 708, "repository": "hello-world",
        "url": "http://192.168.100.227:5000/v2/hello-world/manifests/sha256:fea8895f450959fa"
               "676bcc1df0611ea93823a735a01205fd8622846041d0c7cf",
        "tag": "latest"},
    "request": {"id": "6df24a34-0959-4923-81ca-14f09767db19", "addr": "192.168.64.11:42961",
                "host": "192.168.100.227:5000", "method": "GET", "useragent": "curl/7.38.0"},
    "actor": {},
    "source": {"addr": "xtal.local:5000", "instanceID": "a53db899-3b4b-4a62-a067-8dd013beaca4"},
})

# The v2 envelope example of the same page: a manifest pushed by digest and two layers.
_DOCS_REQUEST = {"id": "asdfasdf", "addr": "client.local", "host": "registrycluster.local",
                 "method": "PUT", "useragent": "test/0.1"}
DOCS_V2_PUSH = envelope(
    {"id": "asdf-asdf-asdf-asdf-0", "timestamp": "2006-01-02T15:04:05Z", "action": "push",
     "target": {"mediaType": DOCKER_MANIFEST,
                "digest": "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf",
                "length": 1, "repository": "library/test",
                "url": "https://example.com/v2/library/test/manifests/sha256:c3b3692957d439ac1928"
                       "219a83fac91e7bf96c153725526874673ae1f2023f8d5"},
     "request": _DOCS_REQUEST, "actor": {"name": "test-actor"},
     "source": {"addr": "hostname.local:port"}},
    *({"id": f"asdf-asdf-asdf-asdf-{n}", "timestamp": "2006-01-02T15:04:05Z", "action": "push",
       "target": {"mediaType": "application/vnd.docker.container.image.rootfs.diff+x-gtar",
                  "digest": "sha256:c3b3692957d439ac1928219a83fac91e7bf96c153725526874673ae1f2"
                            "023f8d5",
                  "length": n + 1, "repository": "library/test",
                  "url": "https://example.com/v2/library/test/blobs/sha256:c3b3692957d439ac192"
                         "8219a83fac91e7bf96c153725526874673ae1f2023f8d5"},
       "request": _DOCS_REQUEST, "actor": {"name": "test-actor"},
       "source": {"addr": "hostname.local:port"}} for n in (1, 2)),
)

# What 2.8.2 sent for `skopeo copy oci:img:base docker://.../team/app:v1` (ids kept, host
# renamed): the layer, the config, then the manifest with its tag, one envelope each.
REAL_LAYER = event(id="3a6d944f-ad37-4e25-8924-4681b89a6d73",
                   media_type="application/octet-stream", digest=BLOB_DIGEST, tag=None)
REAL_MANIFEST = event()
# ... and for a multi-platform push: each platform's manifest by digest, then the index.
REAL_PLATFORM = event(id="8e1f2c55-7a3b-4d9e-9f10-2b6c4d8e0a11", tag=None)
REAL_INDEX = event(id="f3b9a7c2-1d4e-4b8a-9c6f-5e2d1a0b7c93", media_type=OCI_INDEX,
                   digest=INDEX_DIGEST, tag="v2")
# Deletes carry only what was deleted; a mount names the repository the blob came from.
REAL_DELETE_MANIFEST = {"id": "d1", "timestamp": "2026-11-24T03:20:00Z", "action": "delete",
                        "target": {"digest": DIGEST, "repository": "team/other"},
                        "request": _REQUEST, "actor": {}, "source": _SOURCE}
REAL_DELETE_TAG = {"id": "d2", "timestamp": "2026-11-24T03:20:00Z", "action": "delete",
                   "target": {"repository": "team/other", "tag": "v1"},
                   "request": _REQUEST, "actor": {}, "source": _SOURCE}
REAL_MOUNT = event("mount", id="m1", media_type="application/octet-stream",
                   digest=BLOB_DIGEST, tag=None, repository="team/other",
                   fromRepository="team/app")

# Harbor's Default payload for a push, from its documentation ("Configure Webhook
# Notifications").
HARBOR_PUSH: dict[str, Any] = {
    "type": "PUSH_ARTIFACT",
    "occur_at": 1586922308,
    "operator": "admin",
    "event_data": {
        "resources": [{
            "digest": "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8",
            "tag": "latest",
            "resource_url": "hub.harbor.com/test-webhook/debian:latest"}],
        "repository": {"date_created": 1586922308, "name": "debian",
                       "namespace": "test-webhook", "repo_full_name": "test-webhook/debian",
                       "repo_type": "private"},
    },
}
# Harbor's Default payload for a pull by digest (from its source): the digest in the tag's place.
HARBOR_PULL: dict[str, Any] = {
    "type": "PULL_ARTIFACT",
    "occur_at": 1678082303,
    "operator": "admin",
    "event_data": {
        "resources": [{
            "digest": "sha256:dde8e930c7b6a490f728e66292bc9bce42efc9bbb5278bae40e4f30f6e00fe8c",
            "tag": "sha256:dde8e930c7b6a490f728e66292bc9bce42efc9bbb5278bae40e4f30f6e00fe8c",
            "resource_url": "harbor.dev/library/busybox@sha256:dde8e930c7b6a490f728e66292bc9bc"
                            "e42efc9bbb5278bae40e4f30f6e00fe8c"}],
        "repository": {"date_created": 1677053165, "name": "busybox", "namespace": "library",
                       "repo_full_name": "library/busybox", "repo_type": "public"},
    },
}
# The same push in Harbor's CloudEvents format, which carries an event id.
HARBOR_CLOUD_PUSH: dict[str, Any] = {
    "specversion": "1.0",
    "requestid": "2eedfab8-61d3-4f3c-8ec3-8f82d1ec4c84",
    "id": "4b2f89a6-548d-4c12-9993-a1f5790b97d2",
    "source": "/projects/1/webhook/policies/3",
    "type": "harbor.artifact.pushed",
    "datacontenttype": "application/json",
    "time": "2020-04-15T03:45:08Z",
    "data": copy.deepcopy(HARBOR_PUSH["event_data"]),
    "operator": "admin",
}


def harbor_push(**resource: Any) -> dict[str, Any]:
    payload = copy.deepcopy(HARBOR_PUSH)
    payload["event_data"]["resources"][0].update(resource)
    return payload
