"""What a crawl run reports: per-source outcomes and page errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from twin.domain.documents import Platform


class UpsertOutcome(StrEnum):
    NEW = "new"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


class SourceStatus(StrEnum):
    """``ok``: every page fetched and the source's deletions applied.

    ``partial``: some pages failed or a cap cut the crawl short, so what was stored is kept and
    nothing is deleted (an item we could not see is not an item that disappeared).
    ``failed``: nothing usable came from the source; stored documents are untouched.
    """

    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"


@dataclass(frozen=True)
class PageError:
    url: str
    error: str  # the exception class name, e.g. "HttpError", "BlockedTarget"
    message: str


@dataclass
class SourceReport:
    """The running tally for one source of one crawl run."""

    source_url: str
    platform: Platform
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    errors: list[PageError] = field(default_factory=list)
    truncated: bool = False  # a per-source or per-run item cap stopped it
    # Paid posts seen and deliberately not stored: only their preview before the paywall is
    # public, and a teaser cut mid-thought must not train the writer's twin. Not an error.
    paid_skipped: int = 0

    @property
    def failed(self) -> int:
        return len(self.errors)

    @property
    def stored(self) -> int:
        return self.new + self.updated + self.unchanged

    @property
    def status(self) -> SourceStatus:
        if self.errors and self.stored == 0:
            return SourceStatus.FAILED
        if self.errors or self.truncated:
            return SourceStatus.PARTIAL
        return SourceStatus.OK

    def count(self, outcome: UpsertOutcome) -> None:
        if outcome is UpsertOutcome.NEW:
            self.new += 1
        elif outcome is UpsertOutcome.UPDATED:
            self.updated += 1
        else:
            self.unchanged += 1
