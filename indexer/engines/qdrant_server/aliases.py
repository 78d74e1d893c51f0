"""The alias registry of the server engine: Qdrant's own aliases, moved in one request. Made over
the engine's ``ServerConnection``."""

from __future__ import annotations

from typing import Any

from indexer.engines.base import check_alias
from indexer.engines.qdrant_server.connection import ServerConnection
from indexer.versions import PREVIOUS_SUFFIX, AliasState


class ServerAliases:
    def __init__(self, connection: ServerConnection) -> None:
        self._server = connection

    def state(self, alias: str) -> AliasState:
        names = {
            d.alias_name: str(d.collection_name)
            for d in self._server.call("aliases", self._server.client.get_aliases).aliases
        }
        return AliasState(alias, names.get(alias), names.get(alias + PREVIOUS_SUFFIX))

    def move(self, before: AliasState, after: AliasState) -> None:
        """Move the aliases from ``before`` to ``after`` in one server operation, as a
        compare-and-swap: when they are not at ``before`` (another build moved them), nothing
        is changed and StoreError says so. The server has no conditional alias update, so the
        state is read just before the move and again after it: a build that lost the race in
        between fails too, rather than report a move that did not last."""
        from qdrant_client import models

        check_alias(before, self.state(before.alias))
        operations: list[Any] = []
        for alias, collection in after.names.items():
            if before.names[alias] == collection:
                continue
            if before.names[alias] is not None:
                operations.append(
                    models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
                )
            if collection is not None:
                operations.append(
                    models.CreateAliasOperation(
                        create_alias=models.CreateAlias(
                            collection_name=collection, alias_name=alias
                        )
                    )
                )
        if operations:
            self._server.call(
                "aliases",
                self._server.client.update_collection_aliases,
                change_aliases_operations=operations,
            )
        check_alias(after, self.state(before.alias))
