"""API tokens for the service: named, with a role, stored only as sha256 digests.

    lineage tokens add NAME --role admin|investigator   # prints the token once
    lineage tokens list | lineage tokens revoke NAME

Tokens live in `tokens.db` (SQLite) in the home. A token is 32 random bytes (urlsafe base64,
prefixed `lin_`); it is high-entropy, so an unsalted sha256 is enough to make a stolen database
useless for logging in (a slow KDF protects low-entropy passwords, which these are not).

Roles, lowest first: `investigator` may scan, compare, search and read; `admin` may also
register and delete models, run batch scans and manage operations.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lineage.errors import AlreadyExistsError, InvalidArgumentError, UnknownModelError

__all__ = ["ROLES", "TokenRecord", "TokenStore", "digest", "role_at_least"]

ROLES = ("investigator", "admin")  # lowest first
PREFIX = "lin_"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    name       TEXT PRIMARY KEY,
    role       TEXT NOT NULL,
    sha256     TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
"""


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def role_at_least(role: str | None, needed: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidArgumentError(f"role must be one of {ROLES}, got {role!r}", field="role")
    return role


@dataclass(frozen=True)
class TokenRecord:
    name: str
    role: str
    sha256: str  # hex digest; the token itself is never stored
    created_at: str
    revoked_at: str | None


class TokenStore:
    """The home's token table."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    @classmethod
    def for_home(cls, home: str | Path) -> "TokenStore":
        return cls(Path(home).expanduser() / "tokens.db")

    def exists(self) -> bool:
        return self.path.exists()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        return db

    def add(self, name: str, role: str) -> str:
        """Create a token; returns it (the only time it is visible)."""
        check_role(role)
        if not name or len(name) > 128 or not name.replace("-", "").replace("_", "")\
                .replace(".", "").replace("@", "").isalnum():
            raise InvalidArgumentError("token name: 1..128 letters, digits, '-_.@'",
                                       field="name")
        token = PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with closing(self._connect()) as db:
            try:
                db.execute("INSERT INTO tokens VALUES (?,?,?,?,NULL)",
                           (name, role, digest(token).hex(), now))
            except sqlite3.IntegrityError:
                raise AlreadyExistsError(f"a token named {name!r} exists", field="name") \
                    from None
        return token

    def revoke(self, name: str) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with closing(self._connect()) as db:
            cur = db.execute("UPDATE tokens SET revoked_at=? WHERE name=? AND revoked_at IS NULL",
                             (now, name))
            if cur.rowcount == 0:
                raise UnknownModelError(f"no active token named {name!r}", field="name")

    def records(self) -> list[TokenRecord]:
        if not self.exists():
            return []
        with closing(self._connect()) as db:
            return [TokenRecord(*r) for r in db.execute(
                "SELECT name, role, sha256, created_at, revoked_at FROM tokens ORDER BY name")]

    def active(self) -> list[tuple[str, str, bytes]]:
        """(name, role, sha256 digest) of every token not revoked."""
        return [(t.name, t.role, bytes.fromhex(t.sha256)) for t in self.records()
                if t.revoked_at is None]
