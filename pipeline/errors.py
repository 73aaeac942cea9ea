"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class DraError(Exception):
    """Base class for errors caused by the user's input (files, options), not by a bug."""


class DataError(DraError):
    """An image source is missing, malformed or inconsistent."""


class StoreError(DraError):
    """A feature store is missing, incomplete, corrupt or not a store at all."""


class StoreMismatch(StoreError):
    """A store's provenance or source fingerprints differ from what the caller expects."""


class FetchError(DraError):
    """A download failed, a fetched file's checksum differs from the published one, or an archive is unsafe."""
