"""The apiserver's Leases (coordination.k8s.io/v1) for `FakeKube`: get, create, and a replace
that refuses a stale resourceVersion with 409 Conflict, as the real one does."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


class FakeLeases:
    """Mixed into FakeKube, whose store (`get`, `write`, `_create`, `_existing`, `_enter`) it uses."""

    URL: str
    counter: Any
    get: Any
    write: Any
    _path: Any
    _enter: Any
    _create: Any
    _existing: Any
    _refuse: Any

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        path = self._path("Lease", namespace, name)
        await self._enter("read_lease", "GET", path)
        lease = self.get("Lease", namespace, name)
        self.counter.record("GET", self.URL + path, 200 if lease else 404)
        return copy.deepcopy(lease)

    async def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> dict[str, Any]:
        await self._enter("create_lease", "POST", self._path("Lease", namespace))
        return copy.deepcopy(self.write("Lease", self._create("Lease", namespace, lease), "ADDED"))

    async def replace_lease(self, namespace: str, name: str, lease: Mapping[str, Any]) -> dict[str, Any]:
        path = self._path("Lease", namespace, name)
        await self._enter("replace_lease", "PUT", path)
        current = self._existing("PUT", "Lease", namespace, name)
        given = (lease.get("metadata") or {}).get("resourceVersion")
        if given != current["metadata"]["resourceVersion"]:
            raise self._refuse("PUT", path, 409, "Conflict",
                               f'Operation cannot be fulfilled on leases.coordination.k8s.io "{name}": the object '
                               "has been modified; please apply your changes to the latest version and try again")
        replaced = copy.deepcopy(dict(lease))
        replaced["metadata"] = current["metadata"]
        self.counter.record("PUT", self.URL + path, 200)
        return copy.deepcopy(self.write("Lease", replaced))
