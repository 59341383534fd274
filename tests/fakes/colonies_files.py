"""The fake server's snapshot handlers, following `pkg/server/handlers/snapshot`: a snapshot
is a named list of file ids in a colony; members create, read and remove them. The file
catalogue itself is not faked: CFS meets the real server in tests/integration/test_cfs.py."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from tests.fakes.colonies_records import Reply

if TYPE_CHECKING:
    from tests.fakes.colonies import FakeColoniesServer


class SnapshotHandlers:
    def __init__(self, server: FakeColoniesServer) -> None:
        self.server = server
        self.snapshots: dict[str, dict[str, Any]] = {}  # id → snapshot

    def add(self, colony: str, label: str, name: str, file_ids: tuple[str, ...] = ()) -> str:
        snapshot_id = secrets.token_hex(32)
        self.snapshots[snapshot_id] = {"snapshotid": snapshot_id, "colonyname": colony, "label": label,
                                       "name": f"{colony}:{name}", "fileids": list(file_ids)}
        return snapshot_id

    def on_getsnapshotmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.server.require_member(caller, msg.get("colonyname", ""))
        found = self.snapshots.get(msg.get("snapshotid", ""))
        if found is None or found["colonyname"] != msg.get("colonyname"):
            raise Reply(500, "Failed to get snapshot")
        return found

    def on_removesnapshotmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.server.require_member(caller, msg.get("colonyname", ""))
        self.snapshots.pop(msg.get("snapshotid", ""), None)  # the server deletes without checking it existed
        return None
