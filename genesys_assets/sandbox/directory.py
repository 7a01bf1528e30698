"""The sandbox tenant's directory: divisions, users, queues and wrap-up codes, deterministic from a seed.

Both sides of the sandbox stand on it: the Genesys Cloud emulator serves it (``/users``, ``/routing/queues``,
``/routing/wrapupcodes``) and the PureConnect site uses the legacy ids (agent user ids, workgroups, wrap-up
codes) and writes the mapping CSVs from it, with deliberate gaps. Wrap-up codes are renamed and deleted over
time, so a label must be taken as of the conversation's day, never from today's configuration.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import date
from functools import cache

DEFAULT_SEED = 20261122
FALLBACK_USER_NAME = "Historical Migration - Unknown Agent"
DEFAULT_QUEUE_NAME = "Historical Migration - Unmapped"

_NAMESPACE = uuid.UUID("6f1c1c2e-6a47-4a38-9d0b-3f3f7f0c0a11")

_FIRST = ["Ana", "Ben", "Chloé", "Dmitri", "Ewa", "Farah", "Gus", "Hana", "Ivan", "Jo", "Kemal", "Lena",
          "Marta", "Nils", "Olu", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Vik", "Wen", "Yara"]
_LAST = ["Abbott", "Berg", "Costa", "Dubois", "Eze", "Fischer", "García", "Haddad", "Ito", "Jansen", "Kowalski",
         "López", "Müller", "Nakamura", "O'Brien", "Petrov", "Quist", "Rossi", "Singh", "Tanaka"]
_WORKGROUPS = ["Support", "Billing & Payments", "Sales", "Retention", "Technical Support Tier 2", "Claims",
               "Collections", "VIP Care", "Spanish Support", "Outbound Campaigns", "Fraud/Disputes", "Chat Team"]
# (legacy PureConnect wrap-up code, Cloud name at creation, later renames as (date, name), deleted on)
_WRAPUPS: list[tuple[str, str, list[tuple[date, str]], date | None]] = [
    ("RESOLVED", "Resolved", [], None),
    ("RESOLVED-FCR", "Resolved - First Contact", [(date(2025, 6, 1), "Resolved on First Contact")], None),
    ("ESCALATED", "Escalated", [], None),
    ("CALLBACK", "Callback Scheduled", [], None),
    ("SALE", "Sale", [(date(2025, 3, 15), "Sale - Closed"), (date(2026, 2, 1), "Sale Closed")], None),
    ("NO-SALE", "No Sale", [], None),
    ("BILLING-Q", "Billing Question", [], None),
    ("PAYMENT", "Payment Taken", [], None),
    ("CANCEL", "Cancellation", [(date(2025, 9, 1), "Cancellation Request")], None),
    ("RETAINED", "Retained", [], None),
    ("TECH-FIX", "Technical Issue Fixed", [], None),
    ("TECH-TICKET", "Ticket Raised", [], None),
    ("WRONG-NUM", "Wrong Number", [], date(2026, 4, 1)),
    ("SPAM", "Spam / Nuisance", [], None),
    ("COMPLAINT", "Complaint", [], None),
    ("INFO", "Information Given", [(date(2026, 7, 1), "Info Provided")], None),
    ("FRAUD", "Fraud Reported", [], None),
    ("PROMO-2024", "Promo 2024 Enquiry", [], date(2025, 1, 31)),
    ("DUPLICATE", "Duplicate Contact", [], None),
    ("OTHER", "Other", [], None),
]
TENANT_CREATED = date(2024, 1, 1)  # the sandbox org's first day: its directory, and its first conversations


def stable_id(seed: int, kind: str, key: str) -> str:
    """A deterministic UUID for one directory object."""
    return str(uuid.uuid5(_NAMESPACE, f"{seed}/{kind}/{key}"))


@dataclass(frozen=True)
class Division:
    id: str
    name: str


@dataclass(frozen=True)
class User:
    id: str
    name: str
    email: str
    username: str
    state: str  # active | inactive | deleted
    division: Division
    legacy_agent_id: str | None  # PureConnect user id (LastLocalUserId); None for Cloud-only users
    in_mapping_csv: bool


@dataclass(frozen=True)
class Queue:
    id: str
    name: str
    division: Division
    member_count: int
    legacy_workgroup: str | None
    in_mapping_csv: bool


@dataclass(frozen=True)
class WrapupCode:
    id: str
    legacy_code: str
    names: tuple[tuple[date, str], ...]  # (valid from, name), oldest first
    deleted_on: date | None
    division: Division
    in_mapping_csv: bool

    def name_as_of(self, day: date) -> str:
        current = self.names[0][1]
        for valid_from, name in self.names:
            if valid_from <= day:
                current = name
        return current

    def exists_on(self, day: date) -> bool:
        return self.deleted_on is None or day < self.deleted_on

    @property
    def date_created(self) -> date:
        return self.names[0][0]

    def date_modified(self, day: date) -> date:
        changes = [d for d, _ in self.names if d <= day]
        return max(changes)


@dataclass(frozen=True)
class Directory:
    seed: int
    divisions: tuple[Division, ...]
    users: tuple[User, ...]
    queues: tuple[Queue, ...]
    wrapup_codes: tuple[WrapupCode, ...]
    # Legacy ids that PureConnect rows carry but that have no Cloud counterpart at all.
    legacy_only_agents: tuple[str, ...]
    legacy_only_workgroups: tuple[str, ...]

    @property
    def fallback_user(self) -> User:
        return next(u for u in self.users if u.name == FALLBACK_USER_NAME)

    @property
    def default_queue(self) -> Queue:
        return next(q for q in self.queues if q.name == DEFAULT_QUEUE_NAME)

    @property
    def agents(self) -> tuple[User, ...]:
        """Users who handled legacy interactions (they have a PureConnect id)."""
        return tuple(u for u in self.users if u.legacy_agent_id)

    @property
    def routing_queues(self) -> tuple[Queue, ...]:
        return tuple(q for q in self.queues if q.legacy_workgroup)

    def wrapup_codes_as_of(self, day: date) -> tuple[WrapupCode, ...]:
        return tuple(w for w in self.wrapup_codes if w.date_created <= day and w.exists_on(day))


def _legacy_user_id(first: str, last: str, n: int, taken: set[str]) -> str:
    # PureConnect user ids are unique login names; some carry characters a strict target refuses.
    base = f"{first}.{last}".lower().replace(" ", "")
    legacy_id = base if n % 7 and base not in taken else f"{base}#{n}"
    taken.add(legacy_id)
    return legacy_id


@cache
def build_directory(seed: int = DEFAULT_SEED, agent_count: int = 48) -> Directory:
    rng = random.Random(seed)
    home = Division(stable_id(seed, "division", "home"), "Home")
    archive = Division(stable_id(seed, "division", "archive"), "Migration Archive")

    users: list[User] = []
    taken: set[str] = set()
    for n in range(agent_count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        name = f"{first} {last}"
        login = f"{first}.{last}".lower().replace("'", "").replace(" ", "")
        # Agents who left are inactive or deleted in Cloud: only ``state=any`` finds them.
        state = "active" if n % 8 not in (3, 6) else ("inactive" if n % 8 == 3 else "deleted")
        users.append(User(
            id=stable_id(seed, "user", str(n)), name=name, email=f"{login}{n}@example.com",
            username=f"{login}{n}@example.com", state=state, division=home,
            legacy_agent_id=_legacy_user_id(first, last, n, taken), in_mapping_csv=n % 11 != 5,
        ))
    for n, name in enumerate(["Supervisor One", "Supervisor Two"]):
        users.append(User(stable_id(seed, "user", f"sup{n}"), name, f"sup{n}@example.com", f"sup{n}@example.com",
                          "active", home, None, False))
    users.append(User(stable_id(seed, "user", "fallback"), FALLBACK_USER_NAME, "migration-unknown@example.com",
                      "migration-unknown@example.com", "active", archive, None, False))

    queues = [
        Queue(stable_id(seed, "queue", wg), wg, home, rng.randint(3, 30), wg, in_mapping_csv=i != 7)
        for i, wg in enumerate(_WORKGROUPS)
    ]
    queues.append(Queue(stable_id(seed, "queue", "default"), DEFAULT_QUEUE_NAME, archive, 1, None, False))

    wrapups = tuple(
        WrapupCode(
            id=stable_id(seed, "wrapup", legacy), legacy_code=legacy,
            names=((TENANT_CREATED, first_name), *renames), deleted_on=deleted, division=home,
            in_mapping_csv=legacy != "TECH-TICKET",
        )
        for legacy, first_name, renames, deleted in _WRAPUPS
    )
    return Directory(
        seed=seed, divisions=(home, archive), users=tuple(users), queues=tuple(queues), wrapup_codes=wrapups,
        legacy_only_agents=("temp.agent01", "contractor-7", "old_admin"),
        legacy_only_workgroups=("Legacy Overflow", "Night Shift (2019)"),
    )
