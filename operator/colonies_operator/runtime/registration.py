"""Registering one executor in its colony without ever evicting another.

Colonies keys executors by name, and adding a name that exists either fails or, on servers
with `COLONIES_ALLOW_EXECUTOR_REREGISTER` (docker-compose and Helm set it), silently
removes the holder and re-queues everything it runs. So the holder of the name is looked
up first, and a live holder with another id is a `NameConflict`, never replaced.

Only members of a colony may read its executors, and an executor is not one before it is
registered. The colony owner is no member either; so the operator reads through a colony
*user* of its own, whose key is derived from the colony key (`Key.derive("reader")`) and
which it adds to the colony (as the colony owner) the first time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from colonies_operator.colonies import errors
from colonies_operator.colonies.client import ColoniesClient
from colonies_operator.colonies.crypto import Key
from colonies_operator.colonies.models import Executor, ExecutorState

log = logging.getLogger(__name__)

FUNCTION_NAME = "execute"
READER_PURPOSE = "reader"


class NameConflict(Exception):
    """The executor name is held by a live executor with another id."""

    def __init__(self, name: str, holder: Executor) -> None:
        heard = holder.lastheardfromtime.isoformat() if holder.lastheardfromtime else "never"
        super().__init__(
            f"executor name {name!r} is held by executor {holder.executorid} (type {holder.executortype!r}, "
            f"last heard {heard}): set another spec.executorName, or remove that executor if it is gone "
            f"(`colonies executor remove --name {name}`); Colonies removes executors itself once they have "
            "been silent for 600 s")
        self.holder = holder


@dataclass(frozen=True)
class Identity:
    """What the executor is registered as; changing any of it means registering again."""

    colony: str
    name: str
    executor_type: str
    location: str = ""


class Registration:
    def __init__(self, owner: ColoniesClient, me: ColoniesClient, reader: ColoniesClient, identity: Identity) -> None:
        self.owner = owner      # the colony owner: adds, approves, removes executors
        self.me = me            # the executor itself
        self.reader = reader    # a colony user of the operator's: reads who holds a name
        self.identity = identity
        self._reader_ok = False

    async def holder(self) -> Executor | None:
        """The executor registered under our name now (any state), or None."""
        await self._ensure_reader()
        try:
            return await self.reader.get_executor(self.identity.colony, self.identity.name)
        except errors.NotFound:
            return None

    async def _ensure_reader(self) -> None:
        # getexecutormsg answers an unknown name before it checks membership: ask something
        # that checks membership first
        if self._reader_ok:
            return
        try:
            await self.reader.get_executors(self.identity.colony)
        except errors.Forbidden:  # the reader is not a colony user yet
            await self._add_reader()
        self._reader_ok = True

    async def register(self, *, hardware: Sequence[Mapping[str, Any]] = (),
                       software: Sequence[Mapping[str, Any]] = ()) -> None:
        """Idempotent: registered and approved under our name with our id, with `execute` added.
        Raises NameConflict when another live executor holds the name."""
        ident = self.identity
        holder = await self.holder()
        if holder is not None and holder.state is not ExecutorState.UNREGISTERED and holder.executorid != self.me.id:
            raise NameConflict(ident.name, holder)
        current = (holder is not None and holder.executorid == self.me.id
                   and holder.state is not ExecutorState.UNREGISTERED)
        if current and (holder.executortype != ident.executor_type  # type: ignore[union-attr]
                        or holder.locationname.lower() != ident.location.lower()):  # type: ignore[union-attr]
            # Only a new registration changes these; nothing of ours runs under the old one now
            # (the runtime of the old settings drained before this one started).
            log.info("executor %s changes type or location: registering it again", ident.name)
            await self.owner.remove_executor(ident.colony, ident.name)
            current = False
        if not current:
            await self._free_our_id()
            try:
                await self.owner.add_executor(ident.colony, self.me.id, ident.name, ident.executor_type,
                                              location=ident.location, hardware=hardware, software=software)
            except errors.BadRequest as exc:
                if "already exists" not in exc.message:
                    raise
                holder = await self.holder()  # someone registered the name meanwhile
                if holder is not None and holder.executorid != self.me.id:
                    raise NameConflict(ident.name, holder) from None
        if not current or holder.state is not ExecutorState.APPROVED:  # type: ignore[union-attr]
            await self.owner.approve_executor(ident.colony, ident.name)
        if current and (tuple(hardware) != holder.hardware or tuple(software) != holder.software):  # type: ignore[union-attr]
            await self.update_capabilities(hardware=hardware, software=software)
        functions = await self.me.get_functions(ident.colony, ident.name)
        if not any(f.get("funcname") == FUNCTION_NAME for f in functions):
            await self.me.add_function(ident.colony, ident.name, FUNCTION_NAME, ident.executor_type)

    async def update_capabilities(self, *, hardware: Sequence[Mapping[str, Any]] = (),
                                  software: Sequence[Mapping[str, Any]] = ()) -> None:
        await self.me.update_executor(self.identity.colony, self.identity.name, hardware=hardware, software=software)

    async def unregister(self) -> bool:
        """Remove our registration, never another executor's; False when it was not ours."""
        holder = await self.holder()
        if holder is None or holder.executorid != self.me.id or holder.state is ExecutorState.UNREGISTERED:
            return False
        await self.owner.remove_executor(self.identity.colony, self.identity.name)
        return True

    async def remove_earlier(self, name: str, executor_id: str) -> bool:
        """Remove a registration this resource had before (another name or key), if it is still
        there with that id: Colonies then re-queues what runs under it. False when it is gone."""
        await self._ensure_reader()
        try:
            holder = await self.reader.get_executor(self.identity.colony, name)
        except errors.NotFound:
            return False
        if holder.executorid != executor_id or holder.state is ExecutorState.UNREGISTERED:
            return False
        await self.owner.remove_executor(self.identity.colony, name)
        return True

    async def _free_our_id(self) -> None:
        """Colonies looks an executor up by id and takes the first row it finds: our id must not
        stay on another name (a rename with the same key), or every assign is refused. A removed
        row keeps its id; re-adding its name under a throwaway id and removing it again frees ours."""
        ident = self.identity
        for other in await self.reader.get_executors(ident.colony):
            if other.executorid != self.me.id or other.executorname == ident.name:
                continue
            log.info("freeing executor id %s from the old name %s", self.me.id[:12], other.executorname)
            if other.state is not ExecutorState.UNREGISTERED:
                await self.owner.remove_executor(ident.colony, other.executorname)
            await self.owner.add_executor(ident.colony, Key.generate().id, other.executorname, other.executortype)
            await self.owner.remove_executor(ident.colony, other.executorname)

    async def _add_reader(self) -> None:
        name = f"colonies-operator-{self.reader.id[:12]}"
        try:
            await self.owner.add_user(self.identity.colony, self.reader.id, name)
            log.info("added colony user %s, through which the operator reads executor names", name)
        except errors.BadRequest as exc:
            if "exist" not in exc.message:
                raise
