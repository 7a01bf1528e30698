"""Personal data: customer addresses (phone numbers, e-mail, SIP) are stored only as keyed hashes.

HMAC-SHA256 with a key from the environment (``GENESYS_PII_HASH_KEY``): the same number always gives the same
hash, so analysts can still count repeat callers and join across tables, but nobody without the key can
reverse a hash by hashing every possible phone number.
"""

from __future__ import annotations

import hashlib
import re

import polars as pl

PHONE_VALUE = re.compile(r"^\s*(?:tel:|sip:)?\+?[\d\s().\-/]{7,}(?:@.*)?\s*$", re.IGNORECASE)
# Attribute values are matched more strictly (account numbers are digits too): only ``tel:``/``sip:``/``+``.
PHONE_ATTRIBUTE = r"^\s*(?:(?:tel:|sip:)\+?|\+)\d[\d\s().\-]{5,}\d(?:@.*)?\s*$"
PHONE_ATTRIBUTE_RE = re.compile(PHONE_ATTRIBUTE, re.IGNORECASE)
# Phone-number-like runs inside free text: an optional +, then >= 9 digits allowing common separators.
PHONE_IN_TEXT = r"\+?\d(?:[\s().\-]{0,2}\d){8,}"
PHONE_REDACTED = "[phone]"


_ADDR_PREFIX = r"^(?:tel:|sips?:)"
_PHONE_USER = r"^\+?[\d\s().\-/]{7,}$"
_PHONE_SEPARATORS = r"[\s().\-/]"


def normalize_address(value: str) -> str:
    """Canonical form of an address before hashing, so ``tel:+1 (317) 555-0100`` and ``+13175550100`` agree.

    Lower-cased, ``tel:``/``sip:`` prefix removed, separators removed from a phone-number user part.
    ``AddressHasher.hash_series`` applies the same rules vectorised.
    """
    v = re.sub(_ADDR_PREFIX, "", value.strip().lower())
    user, at, host = v.partition("@")
    if re.match(_PHONE_USER, user):
        user = re.sub(_PHONE_SEPARATORS, "", user)
    return user + at + host


def _normalize_expr(col: pl.Expr) -> pl.Expr:
    v = col.str.strip_chars().str.to_lowercase().str.replace(_ADDR_PREFIX, "")
    user = v.str.extract(r"^([^@]*)", 1)
    rest = v.str.extract(r"^[^@]*(@.*)$", 1).fill_null("")
    user = pl.when(user.str.contains(_PHONE_USER)).then(user.str.replace_all(_PHONE_SEPARATORS, "")).otherwise(user)
    return user + rest


class AddressHasher:
    """Keyed hashing (HMAC-SHA256) of addresses: stable join keys for analysts, no clear numbers in the lake."""

    def __init__(self, key: bytes | str) -> None:
        key_bytes = key.encode() if isinstance(key, str) else bytes(key)
        if not key_bytes:
            raise ValueError("an HMAC key is required to hash customer addresses")
        if len(key_bytes) > 64:
            key_bytes = hashlib.sha256(key_bytes).digest()
        key_bytes = key_bytes.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key_bytes))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key_bytes))

    def hash(self, value: str) -> str:
        """HMAC-SHA256 of the normalised address, first 128 bits as hex."""
        return self._hmac(normalize_address(value))

    def _hmac(self, normalized: str) -> str:
        inner = self._inner.copy()
        inner.update(normalized.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[:32]

    def hash_series(self, s: pl.Series) -> pl.Series:
        """Hash a string column; normalised in Polars, each distinct value HMAC'd once."""
        if s.null_count() == s.len():
            return pl.Series(s.name, [None] * s.len(), dtype=pl.String)
        norm = pl.select(_normalize_expr(pl.lit(s))).to_series()
        uniq = norm.drop_nulls().unique()
        hmac = self._hmac
        hashed = pl.Series([hmac(v) for v in uniq.to_list()], dtype=pl.String)
        return norm.replace_strict(uniq, hashed, default=None, return_dtype=pl.String).alias(s.name)

    def hash_if_phone(self, s: pl.Series, pattern: str = PHONE_VALUE.pattern) -> pl.Series:
        """Replace the values that look like phone numbers by their hash; keep the others."""
        looks = s.str.contains(pattern)
        if not looks.any():
            return s
        return pl.select(pl.when(looks).then(self.hash_series(s)).otherwise(s)).to_series().alias(s.name)


def as_hasher(hmac_key: bytes | str | AddressHasher) -> AddressHasher:
    return hmac_key if isinstance(hmac_key, AddressHasher) else AddressHasher(hmac_key)
