"""ColonyOS CFS metadata: the file catalogue and snapshots Colonies keeps (v1.9.x).

Colonies stores only metadata; the bytes live in S3 under the object name a file's
reference carries. A *label* is a directory path ("/data/run1"); every directory of a synced
tree is its own label, and a file's `name` is its base name within that label. Adding a file
with a name that exists adds a revision; reads that list a label return the newest one.

Records are written as the Go tools write them (`colonies fs sync`), so either side can read
what the other wrote, with one deliberate difference: our records carry no S3 keys (the Go
tools copy their access and secret key into every record; nothing reads them back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from colonies_operator.colonies import errors
from colonies_operator.colonies.client import ColoniesClient

CHECKSUM_ALG = "SHA256"


def normal_label(label: str) -> str:
    """A label as the Go tools store it: one leading "/", no trailing one ("data/" → "/data")."""
    text = label.strip()
    text = text if text.startswith("/") else "/" + text
    return text.rstrip("/") or "/"


@dataclass(frozen=True)
class S3Location:
    """Where a file's bytes are: a bucket and an object name on one S3 endpoint."""

    endpoint: str = ""  # host[:port], as AWS_S3_ENDPOINT
    tls: bool = False
    region: str = ""
    bucket: str = ""
    object: str = ""

    @classmethod
    def from_json(cls, ref: Mapping[str, Any] | None) -> S3Location:
        s3 = (ref or {}).get("s3object") or {}
        return cls(endpoint=str(s3.get("server") or ""), tls=bool(s3.get("tls")), region=str(s3.get("region") or ""),
                   bucket=str(s3.get("bucket") or ""), object=str(s3.get("object") or ""))

    def to_json(self) -> dict[str, Any]:
        return {"protocol": "s3", "s3object": {
            "server": self.endpoint, "port": -1, "tls": self.tls, "accesskey": "", "secretkey": "",
            "region": self.region, "encryptionkey": "", "encryptionalg": "", "object": self.object,
            "bucket": self.bucket}}


@dataclass(frozen=True)
class CatalogueFile:
    """One revision of one file, as `addfilemsg`/`getfilemsg` carry it."""

    label: str
    name: str
    size: int
    checksum: str  # hex SHA-256 of the bytes
    location: S3Location
    file_id: str = ""
    sequence: int = 0

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CatalogueFile:
        return cls(label=str(d.get("label") or ""), name=str(d.get("name") or ""), size=int(d.get("size") or 0),
                   checksum=str(d.get("checksum") or ""), location=S3Location.from_json(d.get("ref")),
                   file_id=str(d.get("fileid") or ""), sequence=int(d.get("sequencenr") or 0))

    def to_json(self, colony: str) -> dict[str, Any]:
        return {"fileid": self.file_id, "colonyname": colony, "label": self.label, "name": self.name,
                "size": self.size, "sequencenr": self.sequence, "checksum": self.checksum,
                "checksumalg": CHECKSUM_ALG, "ref": self.location.to_json()}


@dataclass(frozen=True)
class RemoteFile:
    """The newest revision of a file in a label, as `getfilesmsg` lists it."""

    name: str
    size: int
    checksum: str
    object: str  # the S3 object name, in the bucket the file was stored to

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RemoteFile:
        return cls(name=str(d.get("name") or ""), size=int(d.get("size") or 0),
                   checksum=str(d.get("checksum") or ""), object=str(d.get("s3filename") or ""))


@dataclass(frozen=True)
class Snapshot:
    """A frozen list of file revisions taken from a label and everything under it."""

    snapshot_id: str
    label: str
    name: str
    file_ids: tuple[str, ...]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Snapshot:
        return cls(snapshot_id=str(d.get("snapshotid") or ""), label=str(d.get("label") or ""),
                   name=str(d.get("name") or ""), file_ids=tuple(str(f) for f in d.get("fileids") or ()))


class Catalogue:
    """The file catalogue and snapshots of one colony, as one identity sees them."""

    def __init__(self, client: ColoniesClient, colony: str) -> None:
        self.client = client
        self.colony = colony

    async def _call(self, msgtype: str, idempotent: bool = True, **fields: Any) -> Any:
        return await self.client.connection.call(msgtype, fields, self.client.key, idempotent=idempotent)

    async def add(self, file: CatalogueFile) -> CatalogueFile:
        """Add a revision. Not retried on a lost answer: a retry could add it twice."""
        reply = await self._call("addfilemsg", False, file=file.to_json(self.colony))
        return CatalogueFile.from_json(reply)

    async def files(self, label: str) -> list[RemoteFile]:
        """The newest revision of every file directly in `label` (not in labels below it)."""
        reply = await self._call("getfilesmsg", colonyname=self.colony, label=normal_label(label))
        return [RemoteFile.from_json(f) for f in reply or ()]

    async def file(self, file_id: str) -> CatalogueFile:
        reply = await self._call("getfilemsg", colonyname=self.colony, fileid=file_id, label="", name="",
                                 latest=False)
        if not reply:
            raise errors.NotFound(404, f"no file {file_id}", "getfilemsg")
        return CatalogueFile.from_json(reply[0])

    async def labels_below(self, label: str) -> list[str]:
        """Every label strictly below `label` that holds files ("/a" → "/a/b", "/a/b/c"; not "/ab").

        Asked as a prefix query on `label + "/"`: the server's exact form also needs the label
        itself to hold a file, or it answers nothing at all."""
        prefix = normal_label(label).rstrip("/") + "/"
        reply = await self._call("getfilelabelsmsg", colonyname=self.colony, name=prefix, exact=False)
        return sorted(str(item.get("name")) for item in reply or () if str(item.get("name", "")).startswith(prefix))

    async def create_snapshot(self, label: str, name: str) -> Snapshot:
        reply = await self._call("createsnapshotmsg", False, colonyname=self.colony, label=normal_label(label),
                                 name=name)
        return Snapshot.from_json(reply)

    async def snapshot(self, snapshot_id: str = "", *, name: str = "") -> Snapshot:
        """A snapshot by id, or by the name it was created with."""
        return Snapshot.from_json(await self._call("getsnapshotmsg", colonyname=self.colony,
                                                   snapshotid=snapshot_id, name=name))

    async def remove_snapshot(self, snapshot_id: str) -> None:
        await self._call("removesnapshotmsg", colonyname=self.colony, snapshotid=snapshot_id, name="")
