"""The key that turns customer addresses into stable, irreversible hashes (see ``lib/pii.py``)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from genesys_assets.lib.pii import AddressHasher


class PiiHashingResource(dg.ConfigurableResource):
    """HMAC key for customer phone numbers and addresses; configure it with ``dg.EnvVar("GENESYS_PII_HASH_KEY")``.

    Keep the key stable: a new key gives every customer a new hash, and joins across the change break.
    """

    hash_key: str = Field(description="HMAC-SHA256 key (secret). Use dg.EnvVar('GENESYS_PII_HASH_KEY').")

    def __repr_args__(self) -> list:
        return []  # never show the key

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.hasher()  # a short key fails the run before any work, not at the first number to hash

    def hasher(self) -> AddressHasher:
        if len(self.hash_key) < 16:
            raise ValueError(
                "GENESYS_PII_HASH_KEY must be at least 16 characters: customer numbers are hashed with it, and a "
                "short key can be brute-forced over the space of phone numbers. Generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` and keep it stable."
            )
        return AddressHasher(self.hash_key)
