"""The PII hashing key is refused when a run's resources start, before any work, and never shown."""

from __future__ import annotations

import pytest

from genesys_assets.resources.pii import PiiHashingResource


def test_a_short_key_stops_the_resource_at_setup_without_showing_it() -> None:
    resource = PiiHashingResource(hash_key="k3y-x")
    with pytest.raises(ValueError, match="at least 16 characters") as refused, \
            resource.process_config_and_initialize_cm():
        pass
    assert "k3y-x" not in str(refused.value) and "k3y-x" not in repr(resource)


def test_a_long_enough_key_hashes_the_same_number_the_same_way() -> None:
    with PiiHashingResource(hash_key="a-stable-key-0123456789").process_config_and_initialize_cm() as ready:
        first, again = ready.hasher().hash("+15551230000"), ready.hasher().hash("+15551230000")
    assert first == again and "5551230000" not in first
