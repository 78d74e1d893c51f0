"""The alias registry of the server engine: Qdrant's own aliases, moved in one request. A part
of ``ServerEngine``, which provides ``call`` and the client."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from indexer.engine import check_alias
from indexer.versions import PREVIOUS_SUFFIX, AliasState

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

T = TypeVar("T")


class ServerAliases:
    client: QdrantClient

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        raise NotImplementedError

    def alias_state(self, alias: str) -> AliasState:
        names = {
            d.alias_name: str(d.collection_name)
            for d in self.call("aliases", self.client.get_aliases).aliases
        }
        return AliasState(alias, names.get(alias), names.get(alias + PREVIOUS_SUFFIX))

    def move_aliases(self, before: AliasState, after: AliasState) -> None:
        """Move the aliases from ``before`` to ``after`` in one server operation, as a
        compare-and-swap: when they are not at ``before`` (another build moved them), nothing
        is changed and StoreError says so. The server has no conditional alias update, so the
        state is read just before the move and again after it: a build that lost the race in
        between fails too, rather than report a move that did not last."""
        from qdrant_client import models

        check_alias(before, self.alias_state(before.alias))
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
            self.call(
                "aliases",
                self.client.update_collection_aliases,
                change_aliases_operations=operations,
            )
        check_alias(after, self.alias_state(before.alias))
