"""The project's exception tree, drawn once.

::

    TwinError                       base of everything we raise on purpose
    ├── InvalidSpec                 permanent: a TwinProfile (or settings) that can never work as written;
    │                               the operator reports it as a condition and does not retry
    ├── InvalidSourceURL            permanent, per source: malformed URL, unsupported scheme
    ├── FetchError                  one page could not be fetched or used; the crawl goes on
    │   ├── BlockedTarget           the address guard refused a private/loopback/link-local target
    │   ├── UnsupportedContent      a body that is not what the extractor reads (PDF, image, ...)
    │   ├── UndecodableContent      bytes that do not decode in the declared or sniffed charset
    │   ├── PageTooLarge            a body over the page-size cap (the browser path; Scrapy's own
    │   │                           DOWNLOAD_MAXSIZE cancels plain downloads first)
    │   ├── EmptyExtraction         the page parsed but held no text worth storing
    │   ├── CredentialsRequired     the platform needs a login and settings hold none
    │   └── LoginFailed             the platform refused the login from settings
    ├── PoisonEvent                 a change event that can never be processed: dead-lettered, stream goes on
    ├── InsufficientData            permanent until more writing arrives: no documents to train on, or
    │                               too few to hold any out for evaluation; nothing is trained or registered
    ├── DependencyNotReady          temporary: a store or service is not up yet; retry after a delay
    └── StoreError                  a storage operation failed for a reason other than readiness

Anything else is a bug or an infrastructure fault, and callers retry it with backoff.
"""

from __future__ import annotations


class TwinError(Exception):
    """Base class for every error this project raises deliberately."""


class InvalidSpec(TwinError):
    """A TwinProfile or configuration that can never work as written (permanent)."""


class InvalidSourceURL(TwinError):
    """A source URL that is malformed or uses a scheme we do not crawl (permanent, per source)."""


class FetchError(TwinError):
    """One page could not be fetched or turned into a document; other pages and sources go on."""


class BlockedTarget(FetchError):
    """The address guard refused a private, loopback, link-local or otherwise internal target."""


class UnsupportedContent(FetchError):
    """A response body of a type the extractor does not read (for example PDF or an image)."""


class UndecodableContent(FetchError):
    """A response body whose bytes do not decode as text."""


class PageTooLarge(FetchError):
    """A response body larger than the page-size cap."""


class EmptyExtraction(FetchError):
    """A page that parsed but yielded no text worth storing; stored content is left alone."""


class CredentialsRequired(FetchError):
    """The platform needs a login (LinkedIn) and settings hold no credentials for it."""


class LoginFailed(FetchError):
    """The platform refused the credentials from settings."""


class InsufficientData(TwinError):
    """A profile's data cannot make a dataset: no documents, no training samples after filters, or
    no document to hold out for evaluation. Permanent until more writing is collected."""


class DependencyNotReady(TwinError):
    """A dependency (database, broker, API server) is not ready yet (temporary: retry later)."""


class StoreError(TwinError):
    """A storage operation failed for a reason other than the store not being ready."""


class PoisonEvent(TwinError):
    """A change event that can never be processed (malformed envelope, unknown table, a document
    too large or undecodable): it goes to the dead-letter table with this message and the stream
    moves on."""
