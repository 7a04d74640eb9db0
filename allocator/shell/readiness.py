"""Why the allocator is not ready, kept by source: starting, the group it joins, the
broker it publishes to. Each source says and clears its own, so that one clearing never
clears another's (a single string did: cleared by what it began with). A partition's own
trouble is kept with it, in the table of partitions (allocator/shell/partitions.py)."""

from dataclasses import dataclass, field


@dataclass
class Unready:
    by_source: dict[str, str] = field(default_factory=dict)

    def say(self, source: str, why: str) -> None:
        self.by_source[source] = why

    def clear(self, *sources: str) -> None:
        for source in sources:
            self.by_source.pop(source, None)

    def first(self) -> str | None:
        """The reason of the first source that has one, in the order they were said."""
        return next(iter(self.by_source.values()), None)


STARTING, GROUP, BROKER = "starting", "group", "broker"
