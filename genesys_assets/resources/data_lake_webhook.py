"""The data-lake webhook receiver: the one external system of the messaging domain besides Genesys Cloud."""

from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field

from genesys_assets.lib.webchat_webhook import Delivery, deliver


def _host_only(url: str) -> str:
    """``https://host[:port]/**********``: where deliveries go, without the path or query that may be the secret."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "**********"
    host = parts.netloc.rpartition("@")[2]  # without any user:password@; an IPv6 host keeps its brackets
    return f"{parts.scheme}://{host}/**********" if host else "**********"


class DataLakeWebhookResource(dg.ConfigurableResource):
    """Where a completed archive day is announced (``DATA_LAKE_WEBHOOK_URL``); no URL means no notice."""

    url: str | None = Field(default=None, description="Receiver URL (DATA_LAKE_WEBHOOK_URL). Use dg.EnvVar.")
    max_attempts: int = Field(default=4, description="Deliveries tried on connection errors, 429 and 5xx.")
    backoff_base_seconds: float = Field(default=1.0, description="First backoff ceiling (doubles, full jitter).")
    backoff_max_seconds: float = Field(default=30.0, description="Largest backoff.")
    timeout_seconds: float = Field(default=10.0, description="Connect/read timeout of one delivery.")

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():  # a webhook URL often holds its secret (a path, ?code=)
            yield name, (_host_only(value) if name == "url" and value else value)

    def notify(self, payload: dict, idempotency_key: str) -> Delivery | None:
        """POST the payload with retries; None when no URL is configured."""
        if not self.url:
            return None
        return deliver(
            self.url,
            payload,
            max_attempts=self.max_attempts,
            backoff_base_seconds=self.backoff_base_seconds,
            backoff_max_seconds=self.backoff_max_seconds,
            timeout_seconds=self.timeout_seconds,
            headers={"Idempotency-Key": idempotency_key},
        )
