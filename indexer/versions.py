"""Collection versions and the alias lifecycle, for both engines.

A full build writes a new collection ``<alias>__<embedding version>__<time>``
(``carembed.identity``: the model version and the precision of its vectors); the alias then moves
to it in one atomic step, the collection it replaces stays behind ``<alias>__previous`` (for
rollback and for replicas still running the old model), and older ones are deleted. The
engines only store "which collection each alias names"; every rule about names and moves is
here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

DEFAULT_ALIAS = "cars"
PREVIOUS_SUFFIX = "__previous"
_ALIAS = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]|_(?!_))*$")
_NAME = re.compile(r"^(?P<alias>[^_].*?)__(?P<version>[^_].*?)__(?P<stamp>\d{8}T\d{6,12})$")


def validate_alias(alias: str) -> str:
    """Letters, digits, ``-`` and single ``_``: a ``__`` would make collection names ambiguous."""
    if len(alias) > 100 or not _ALIAS.match(alias) or alias.endswith("_"):
        raise ValueError(
            f"alias {alias!r}: use letters, digits, '-' and single '_' (no '__'), "
            "starting with a letter or digit, at most 100 characters"
        )
    return alias


@dataclass(frozen=True)
class CollectionName:
    alias: str
    embedding_version: str
    stamp: str

    def __str__(self) -> str:
        return f"{self.alias}__{self.embedding_version}__{self.stamp}"


def new_collection_name(alias: str, embedding_version: str, when: datetime | None = None) -> str:
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%f")
    return str(CollectionName(alias, embedding_version, stamp))


def parse_collection_name(name: str | None) -> CollectionName | None:
    """The parts of a collection name this project made, or None."""
    match = _NAME.match(name or "")
    return CollectionName(match["alias"], match["version"], match["stamp"]) if match else None


def embedding_version_of(name: str | None) -> str | None:
    parsed = parse_collection_name(name)
    return parsed.embedding_version if parsed else None


@dataclass(frozen=True)
class AliasState:
    """The collections behind ``<alias>`` (live) and ``<alias>__previous``."""

    alias: str
    live: str | None = None
    previous: str | None = None

    @property
    def collections(self) -> list[str]:
        """The live and previous collections that exist, live first."""
        return [name for name in (self.live, self.previous) if name is not None]

    @property
    def live_version(self) -> str | None:
        """The embedding version of the live collection's vectors."""
        return embedding_version_of(self.live)

    @property
    def names(self) -> dict[str, str | None]:
        """Alias name -> collection (None: the alias is absent)."""
        return {self.alias: self.live, self.alias + PREVIOUS_SUFFIX: self.previous}

    def promoted(self, target: str) -> AliasState:
        """After a build of ``target``: it is live, the collection it replaces is previous."""
        if target == self.live:
            return self
        return AliasState(self.alias, target, self.live or self.previous)

    def rolled_back(self) -> AliasState:
        if self.live is None or self.previous is None:
            raise LookupError(
                f"no previous collection to roll back to for the alias {self.alias!r}"
            )
        return AliasState(self.alias, self.previous, self.live)

    def holding(self, embedding_version: str) -> list[str]:
        """The collections holding these vectors, live first (the previous one serves them
        during a rollout to another model)."""
        return [n for n in self.collections if embedding_version_of(n) == embedding_version]


def stale_collections(alias: str, names: list[str], state: AliasState) -> list[str]:
    """This alias's collections that neither alias names: builds under way or interrupted,
    and collections older than the previous one."""
    keep = {state.live, state.previous}
    return [
        name
        for name in names
        if (parsed := parse_collection_name(name)) and parsed.alias == alias and name not in keep
    ]


def unfinished_build(
    alias: str, embedding_version: str, names: list[str], state: AliasState
) -> str | None:
    """The newest collection of this alias and embedding version that no alias names: a build
    that was interrupted and can be resumed."""
    candidates = [
        name
        for name in stale_collections(alias, names, state)
        if embedding_version_of(name) == embedding_version
    ]
    return max(candidates) if candidates else None
