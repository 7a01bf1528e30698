"""Legacy → Cloud id maps: the mapping CSVs (seed 001 format) validated against the Cloud directory.

The implementation team's CSVs are the only source of a mapping: nothing is ever resolved by phone number or
by name at run time (seed 001). Each CSV row is checked against the directory (``/users?state=any`` so agents
who left still resolve, ``/routing/queues``, ``/routing/wrapupcodes``): a Cloud id that does not exist, a
malformed id or a legacy id listed twice with different targets makes the row ``invalid`` and the legacy id
unmapped, so it falls to the fallback user / default queue rule instead of a 400 at the target.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from genesys_assets.lib.wrapup_dimension import known_codes

AGENTS, QUEUES, WRAPUPS = "agents", "queues", "wrapups"
CSV_COLUMNS = {
    AGENTS: ("legacy_agent_id", "genesys_user_id", "genesys_user_name"),
    QUEUES: ("legacy_queue_id", "genesys_queue_id", "genesys_queue_name"),
    WRAPUPS: ("legacy_wrapup_code", "genesys_wrapup_code_id", "genesys_wrapup_code_name"),
}
UNMAPPED_QUEUE_RULES = ("default_queue", "skip")
MAP_SCHEMA: dict[str, pl.DataType] = {
    "kind": pl.String, "legacy_id": pl.String, "cloud_id": pl.String, "csv_name": pl.String,
    "directory_name": pl.String, "directory_state": pl.String, "status": pl.String, "problem": pl.String,
}
DIRECTORY_SCHEMA: dict[str, pl.DataType] = {"id": pl.String, "name": pl.String, "state": pl.String}
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID_RE = re.compile(_UUID)


class MappingError(ValueError):
    """The mapping inputs cannot be used (a CSV missing or malformed, the fallback user not in the directory)."""


def read_mapping_csv(path: Path, kind: str) -> pl.DataFrame:
    """One mapping CSV as (legacy_id, cloud_id, csv_name) strings, exactly as written (RFC 4180 quoting)."""
    expected = CSV_COLUMNS[kind]
    if not path.is_file():
        raise MappingError(f"mapping CSV {path} is missing (expected columns {', '.join(expected)})")
    frame = pl.read_csv(path, infer_schema=False, encoding="utf8", quote_char='"')
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise MappingError(f"{path.name} lacks column(s) {', '.join(missing)}; has {', '.join(frame.columns)}")
    return frame.select(
        pl.col(expected[0]).alias("legacy_id"), pl.col(expected[1]).str.strip_chars().alias("cloud_id"),
        pl.col(expected[2]).alias("csv_name"),
    )


def directory_frame(entities: list[dict]) -> pl.DataFrame:
    """Directory entities (users, queues, wrap-up codes) as (id, name, state)."""
    rows = [{"id": e.get("id"), "name": e.get("name"), "state": e.get("state") or "active"} for e in entities]
    return pl.DataFrame(rows, schema=DIRECTORY_SCHEMA)


def with_deleted_codes(directory: pl.DataFrame, dimension: pl.DataFrame | None) -> pl.DataFrame:
    """Today's wrap-up codes plus the ones deleted since (from the SCD2 dimension), so history still maps."""
    if dimension is None:
        return directory
    deleted = known_codes(dimension).join(directory, on="id", how="anti").cast(DIRECTORY_SCHEMA)
    return pl.concat([directory, deleted.select(directory.columns)])


def validate_map(kind: str, csv: pl.DataFrame, directory: pl.DataFrame) -> pl.DataFrame:
    """Each CSV row with its status: ``valid`` or ``invalid`` and the problem.

    At most one row per legacy id is valid: the interactions are joined to the valid rows, so two (the same
    mapping written twice with another name, or a directory listing an id twice) would double them.
    """
    dup_conflict = pl.col("cloud_id").n_unique().over("legacy_id") > 1
    repeat = pl.int_range(pl.len()).over("legacy_id", "cloud_id") > 0
    listed_once = directory.unique(subset="id", keep="first", maintain_order=True)
    joined = csv.unique(keep="first", maintain_order=True).join(
        listed_once.rename({"id": "cloud_id", "name": "directory_name", "state": "directory_state"}),
        on="cloud_id", how="left", maintain_order="left",
    )
    problem = (pl.when(pl.col("legacy_id").is_null() | (pl.col("legacy_id") == "")).then(pl.lit("empty legacy id"))
               .when(~pl.col("cloud_id").fill_null("").str.contains(_UUID)).then(pl.lit("cloud id is not a UUID"))
               .when(dup_conflict).then(pl.lit("legacy id mapped to several cloud ids"))
               .when(repeat).then(pl.lit("repeats an earlier row's legacy id and cloud id (only the first counts)"))
               .when(pl.col("directory_name").is_null()).then(pl.lit("cloud id not found in the directory"))
               .otherwise(pl.lit(None, dtype=pl.String)))
    return joined.with_columns(pl.lit(kind).alias("kind"), problem.alias("problem")).with_columns(
        pl.when(pl.col("problem").is_null()).then(pl.lit("valid")).otherwise(pl.lit("invalid")).alias("status"),
    ).select(list(MAP_SCHEMA)).cast(MAP_SCHEMA).sort(  # type: ignore[arg-type]
        ["legacy_id", "cloud_id"], maintain_order=True)


def resolve_target(directory: pl.DataFrame, wanted: str, what: str, env: str) -> tuple[str, str]:
    """(id, name) of the fallback user or default queue, given by id or exact name."""
    by = "id" if _UUID_RE.match(wanted) else "name"
    hit = directory.filter(pl.col(by) == wanted)
    if hit.height != 1:
        raise MappingError(
            f"the configured {what} {wanted!r} matches {hit.height} entries of the Cloud directory; create it "
            f"(e.g. a user named 'Historical Migration - Unknown Agent') or set {env} to its exact name or id")
    return hit["id"][0], hit["name"][0]


@dataclass(frozen=True)
class IdMaps:
    """Validated maps plus the fallback targets, everything the Cloud payload builder needs."""

    maps: pl.DataFrame  # MAP_SCHEMA, all three kinds
    fallback_user_id: str
    fallback_user_name: str
    default_queue_id: str
    default_queue_name: str

    def valid(self, kind: str) -> pl.DataFrame:
        return self.maps.filter((pl.col("kind") == kind) & (pl.col("status") == "valid")).select(
            "legacy_id", "cloud_id", pl.coalesce("directory_name", "csv_name").alias("cloud_name"))

    def fingerprint(self) -> str:
        """A content hash, used as the asset's data version (changes exactly when a mapping changes)."""
        payload = self.maps.write_csv() + "|".join((self.fallback_user_id, self.default_queue_id))
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


def build_id_maps(csvs: dict[str, pl.DataFrame], directories: dict[str, pl.DataFrame], *, fallback_user: str,
                  default_queue: str) -> IdMaps:
    """Validate the three CSVs against their directories and resolve the fallback user and default queue."""
    maps = pl.concat([validate_map(kind, csvs[kind], directories[kind]) for kind in (AGENTS, QUEUES, WRAPUPS)])
    user_id, user_name = resolve_target(directories[AGENTS], fallback_user, "fallback user",
                                        "GENESYS_FALLBACK_USER")
    queue_id, queue_name = resolve_target(directories[QUEUES], default_queue, "default queue",
                                          "GENESYS_DEFAULT_QUEUE")
    return IdMaps(maps, user_id, user_name, queue_id, queue_name)
