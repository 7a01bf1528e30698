"""Personal data: customer addresses (phone numbers, e-mail, SIP) are stored only as keyed hashes.

HMAC-SHA256 with a key from the environment (``GENESYS_PII_HASH_KEY``): the same number always gives the same
hash, so analysts can still count repeat callers and join across tables, but nobody without the key can
reverse a hash by hashing every possible phone number.
"""

from __future__ import annotations

import hashlib
import re

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

PHONE_VALUE = re.compile(r"^\s*(?:tel:|sip:)?\+?[\d\s().\-/]{7,}(?:@.*)?\s*$", re.IGNORECASE)
# Attribute values are matched more strictly (account numbers are digits too): ``tel:``/``sip:``/``+``, unless the
# attribute's key names a phone number (``PHONE_KEY``).
PHONE_ATTRIBUTE = r"^\s*(?:(?:tel:|sip:)\+?|\+)\d[\d\s().\-]{5,}\d(?:@.*)?\s*$"
PHONE_ATTRIBUTE_RE = re.compile(PHONE_ATTRIBUTE, re.IGNORECASE)
# Attribute keys that name a phone number (``callbackNumber``, ``callback``, ``customer_phone``, ``mobile``,
# ``MSISDN``, ``ANI``, ``customerAni``, ``customerANI``, ``dnis``): under them a number written without ``tel:``
# or ``+`` (``317-555-0100``) is hashed too, unless it is an ISO date. ``accountNumber``, ``callbackDate`` and
# ``ANIMAL`` are not such keys. Python's ``re`` and Polars' (Rust) regex read the same pattern and agree on ASCII
# keys without a trailing newline (tested); on others Python's case folding and ``$`` match more, so the raw
# landing hashes at least as much as the flattening.
PHONE_KEY = (r"(?i:phone|mobile|msisdn|dnis|callback[-_. ]?num|^callback$)"
             r"|(?:^|[^A-Za-z])ani(?:$|[^a-z])|(?:^|[^A-Z])Ani(?:$|[^a-z])|(?:^|[^A-Z])ANI(?:$|[^A-Za-z])")
ISO_DATE = r"^\s*\d{4}-\d{2}-\d{2}"
PHONE_KEY_RE = re.compile(PHONE_KEY)
ISO_DATE_RE = re.compile(ISO_DATE)
# Phone-number-like runs inside free text: an optional +, then >= 9 digits allowing common separators.
PHONE_IN_TEXT = r"\+?\d(?:[\s().\-]{0,2}\d){8,}"
PHONE_REDACTED = "[phone]"
# Marks a value hashed upstream (the raw landing zone, see ``lib/raw_redaction.py``): it is kept, not re-hashed.
HASHED_PREFIX = "hmac:"
# Only the prefix and a whole hash: a source value that merely starts with "hmac:" is hashed like any other.
_HASHED_VALUE = re.compile(re.escape(HASHED_PREFIX) + "[0-9a-f]{32}")


def is_phone_attribute(key: str, value: str) -> bool:
    """An attribute value that is a phone number: written as one (``tel:``, ``sip:``, ``+``), or under a key that
    names one and shaped like one."""
    return bool(PHONE_ATTRIBUTE_RE.match(value) or (PHONE_KEY_RE.search(key) and is_phone_under_phone_key(value)))


def is_phone_under_phone_key(value: str) -> bool:
    """A value under a key that names a phone number that is shaped like one (and is not an ISO date)."""
    return bool(PHONE_VALUE.match(value)) and not ISO_DATE_RE.match(value)


def is_hashed(value: str) -> bool:
    """True for a value this module hashed upstream (``hmac:`` + 32 hex digits)."""
    return value.startswith(HASHED_PREFIX) and _HASHED_VALUE.fullmatch(value) is not None  # the cheap test first


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
        if is_hashed(normalized):
            return normalized[len(HASHED_PREFIX):]
        inner = self._inner.copy()
        inner.update(normalized.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[:32]

    def hash_series(self, s: pl.Series) -> pl.Series:
        """Hash a string column; normalised in Polars, each distinct value HMAC'd once."""
        if s.null_count() == s.len():
            return pl.Series(s.name, [None] * s.len(), dtype=pl.String)
        out = pl.from_arrow(self.hash_arrays([s.cast(pl.String).to_arrow()])[0])
        assert isinstance(out, pl.Series)
        return out.alias(s.name)

    def hash_arrays(self, arrays: list[pa.Array | pa.ChunkedArray]) -> list[pa.Array]:
        """Hash several string columns in one pass: their distinct values are normalised and HMAC'd once.

        Why: address columns repeat values (DNIS, repeat callers, the same ANI on every session of a call), and
        normalising is the expensive part; doing it per distinct value across all columns at once, then gathering
        the hashes back by dictionary index, costs a fraction of normalising every row of every column.
        Nulls stay null.
        """
        if not arrays:
            return []
        chunks: list[pa.Array] = []
        for a in arrays:
            a = a.cast(pa.string()) if a.type != pa.string() else a
            chunks.extend(a.chunks if isinstance(a, pa.ChunkedArray) else [a])
        encoded = pc.dictionary_encode(pa.chunked_array(chunks, pa.string()).combine_chunks())
        distinct = pl.Series(encoded.dictionary)
        normalised = pl.select(_normalize_expr(pl.lit(distinct))).to_series().to_list()
        hmac = self._hmac
        hashed = pa.array([hmac(v) for v in normalised], pa.string()).take(encoded.indices)
        out, offset = [], 0
        for a in arrays:
            out.append(hashed.slice(offset, len(a)))
            offset += len(a)
        return out

    def hash_if_phone(self, s: pl.Series, pattern: str = PHONE_VALUE.pattern) -> pl.Series:
        """Replace the values that look like phone numbers by their hash; keep the others (only those are hashed)."""
        return self.hash_where(s, s.str.contains(f"(?i){pattern}"))  # as the Python patterns: TEL: is tel:

    def hash_phone_attributes(self, keys: pl.Series, values: pl.Series) -> pl.Series:
        """``values`` with those ``is_phone_attribute`` finds (given each one's key) replaced by their hash."""
        looks = values.str.contains(f"(?i){PHONE_ATTRIBUTE}")
        under_phone_key = keys.str.contains(PHONE_KEY)
        if under_phone_key.any():  # most batches have no such key: their values are not read twice more
            looks = looks | (under_phone_key & values.str.contains(f"(?i){PHONE_VALUE.pattern}")
                             & ~values.str.contains(ISO_DATE))
        return self.hash_where(values, looks)

    def hash_where(self, s: pl.Series, looks: pl.Series) -> pl.Series:
        """``s`` with the values where ``looks`` is true replaced by their hash (a null in ``looks``: kept)."""
        if not looks.any():
            return s
        looks = looks.fill_null(False)
        return s.clone().scatter(looks.arg_true(), self.hash_series(s.filter(looks)))


def is_phone_name(name: str) -> bool:
    """A display name that is just a phone number (the caller id Genesys fills the name with)."""
    return PHONE_VALUE.match(name) is not None


def marked_hash_if_phone(name: str, hasher: AddressHasher) -> str:
    """A display name that is just a phone number → ``hmac:`` + its hash (marked: names are otherwise clear text);
    any other name as it is. The web messaging archive's rule, and the raw landing's (``is_phone_name``)."""
    return HASHED_PREFIX + hasher.hash(name) if is_phone_name(name) else name


def as_hasher(hmac_key: bytes | str | AddressHasher) -> AddressHasher:
    return hmac_key if isinstance(hmac_key, AddressHasher) else AddressHasher(hmac_key)
