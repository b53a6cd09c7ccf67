"""Docker Hub's example push (DESIGN §1, from the seeds): what `relay send` posts by default."""

from __future__ import annotations

import copy
from typing import Any

_SEED_PUSH: dict[str, Any] = {
    "callback_url": "https://registry.hub.docker.com/u/svendowideit/testhook/hook/"
                    "2141b5bi5i5b02bec211i4eeih0242eg11000a/",
    "push_data": {"pushed_at": 1417566161, "pusher": "trustedbuilder", "tag": "latest"},
    "repository": {
        "comment_count": 0, "date_created": 1417494799, "description": "",
        "dockerfile": "#\n# BUILD\t\tdocker build -t svendowideit/apt-cacher .\n"
                      "# RUN\t\tdocker run -d -p 3142:3142 -name apt-cacher-run apt-cacher\n"
                      "#\n# and then you can run containers with:\n"
                      "# \t\tdocker run -t -i -rm -e http_proxy http://192.168.1.2:3142/ "
                      "debian bash\n#\nFROM\t\tubuntu\n\n\n"
                      "VOLUME\t\t[/var/cache/apt-cacher-ng]\nRUN\t\tapt-get update ; "
                      "apt-get install -yq apt-cacher-ng\n\nEXPOSE \t\t3142\nCMD\t\tchmod 777 "
                      "/var/cache/apt-cacher-ng ; /etc/init.d/apt-cacher-ng start ; tail -f "
                      "/var/log/apt-cacher-ng/*\n",
        "full_description": "Docker Hub based automated build from a GitHub repo",
        "is_official": False, "is_private": True, "is_trusted": True, "name": "testhook",
        "namespace": "svendowideit", "owner": "svendowideit",
        "repo_name": "svendowideit/testhook",
        "repo_url": "https://registry.hub.docker.com/u/svendowideit/testhook/",
        "star_count": 0, "status": "Active",
    },
}


def seed_push() -> dict[str, Any]:
    """A fresh copy of the seed push, safe to change."""
    return copy.deepcopy(_SEED_PUSH)
