"""OpenAPI links of meterhub's API: which answer feeds which request, in one place.

A link (OpenAPI 3.1 ``links`` on a response) says how a value of one answer becomes a
parameter of a next request: after ``POST /api/v1/readings`` the written devices, channels
and sources (the answer names them) select what was written in the reads, the catalog and
``DELETE /api/v1/readings``; after ``POST /api/v1/keys`` the new key's id revokes it. Client
generators and schemathesis' stateful runs follow them (write, then read back).
`apply` adds them to the generated document; `create_app` calls it once.
"""

from __future__ import annotations

from typing import Any

V1 = "/api/v1"


def _ref(path: str, method: str) -> str:
    """An ``operationRef`` to an operation of this document (a JSON pointer)."""
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


_WRITTEN = "$response.body#/devices"
_CHANNELS = "$response.body#/channels"
_SOURCES = "$response.body#/sources"

#: (path, method, status) of a source answer -> its links: name -> (target path, method,
#: parameters as ``location.name`` -> runtime expression, description)
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, str], str]]] = {
    (f"{V1}/readings", "post", "200"): {
        "ReadWritten": (f"{V1}/readings", "get",
                        {"query.device": _WRITTEN, "query.channel": _CHANNELS},
                        "The readings of the devices and channels written."),
        "AggregateWritten": (f"{V1}/aggregates", "get",
                             {"query.device": _WRITTEN, "query.channel": _CHANNELS},
                             "Aggregates of the devices and channels written."),
        "GapsOfWritten": (f"{V1}/gaps", "get",
                          {"query.device": _WRITTEN, "query.channel": _CHANNELS},
                          "Gaps of the devices and channels written."),
        "ChannelsOfWritten": (f"{V1}/channels", "get", {"query.device": _WRITTEN},
                              "The channels of the devices written."),
        "DevicesOfSources": (f"{V1}/devices", "get", {"query.source": _SOURCES},
                             "The devices of the sources written under."),
        "DeleteWritten": (f"{V1}/readings", "delete",
                          {"query.device": _WRITTEN, "query.channel": _CHANNELS},
                          "Delete the readings of the devices and channels written."),
    },
    (f"{V1}/keys", "post", "201"): {
        "RevokeKey": (f"{V1}/keys/{{key_id}}", "delete",
                      {"path.key_id": "$response.body#/key_id"}, "Revoke the key made."),
        "ListKeys": (f"{V1}/keys", "get", {}, "Every key, the new one among them."),
    },
}


def apply(spec: dict[str, Any]) -> dict[str, Any]:
    """Add `LINKS` to the responses of ``spec`` (an OpenAPI document), in place; a link
    whose source or target operation the document lacks is an error (a renamed path)."""
    paths = spec["paths"]
    for (path, method, status), links in LINKS.items():
        response = paths[path][method]["responses"][status]
        out = response.setdefault("links", {})
        for name, (target, target_method, parameters, description) in links.items():
            if target_method not in paths.get(target, {}):
                raise KeyError(f"link {name}: no operation {target_method.upper()} {target}")
            link: dict[str, Any] = {"operationRef": _ref(target, target_method),
                                    "description": description}
            if parameters:
                link["parameters"] = dict(parameters)
            out[name] = link
    return spec


__all__ = ["LINKS", "apply"]
