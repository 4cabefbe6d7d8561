"""Bearer tokens and roles: where credentials come from and what each role may call.

Credentials come from two places, used together:
- a token file (`--token-file`): one credential per line, `TOKEN [ROLE]` or `sha256:HEX [ROLE]`
  (the second form keeps only the digest on disk). A line without a role grants `admin`, which
  is what every token could do before roles existed; give `investigator` to restrict it.
  Blank lines and `#` comments are ignored.
- the home's token table (`lineage tokens add NAME --role ROLE`, see `lineage.tokens`), re-read
  every few seconds so that added and revoked tokens take effect without a restart.

Tokens are kept only as SHA-256 digests and compared with `hmac.compare_digest` against every
entry, so neither the match position nor the token length shows in the timing.

Health checks need no token, so that load balancers and orchestrators can probe the server.
Any other call needs a token (UNAUTHENTICATED without one or with an unknown one) whose role is
at least the method's (PERMISSION_DENIED otherwise; `METHOD_ROLES`, default investigator).
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lineage.errors import InvalidArgumentError
from lineage.tokens import ROLES, TokenStore, digest, role_at_least

__all__ = ["PUBLIC_METHODS", "METHOD_ROLES", "SVC_PREFIX", "OPS_PREFIX", "Credential", "CredentialSource", "load_tokens",
           "bearer", "check", "needed_role"]

PUBLIC_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})
#: full-method prefixes of the two services (shared with `server.guard`)
SVC_PREFIX = _SVC = "/lineage.v1.LineageService/"
OPS_PREFIX = _OPS = "/google.longrunning.Operations/"
#: methods that need more than `investigator`
METHOD_ROLES = {
    _SVC + "CreateModel": "admin",
    _SVC + "DeleteModel": "admin",
    _SVC + "CreateBatchScan": "admin",
    _OPS + "CancelOperation": "admin",
    _OPS + "DeleteOperation": "admin",
}
LEGACY_ROLE = "admin"  # a token-file line without a role
log = logging.getLogger("lineage.server")


def needed_role(method: str) -> str:
    return METHOD_ROLES.get(method, ROLES[0])


@dataclass(frozen=True)
class Credential:
    digest: bytes  # sha256 of the token
    role: str
    name: str = ""  # who, for the audit log (a token name, or token-file:LINE)


def load_tokens(path: str | Path) -> list[Credential]:
    """Parse a token file; refuses a file without any token (it would lock everyone out)."""
    p = Path(path).expanduser()
    try:
        lines = p.read_text().splitlines()
    except OSError as e:
        raise InvalidArgumentError(f"cannot read token file {p}: {e.strerror}",
                                   field="token_file") from None
    creds = []
    roleless = []
    for no, line in enumerate(lines, 1):
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if len(parts) > 2:
            raise InvalidArgumentError(f"token file {p}:{no}: a line is 'TOKEN [ROLE]'",
                                       field="token_file")
        if len(parts) == 1:
            roleless.append(no)
        role = parts[1] if len(parts) == 2 else LEGACY_ROLE
        if role not in ROLES:
            raise InvalidArgumentError(f"token file {p}:{no}: role must be one of {ROLES}",
                                       field="token_file")
        tok = parts[0]
        if tok.startswith("sha256:"):
            try:
                d = bytes.fromhex(tok[7:])
            except ValueError:
                d = b""
            if len(d) != 32:
                raise InvalidArgumentError(f"token file {p}:{no}: sha256: needs 64 hex digits",
                                           field="token_file")
        else:
            d = digest(tok)
        creds.append(Credential(d, role, f"token-file:{no}"))
    if not creds:
        raise InvalidArgumentError(f"token file {p} holds no token", field="token_file")
    if roleless:  # kept for files written before roles; say so, since it is the widest role
        log.warning("token file %s: line(s) %s name no role and grant %r; write 'TOKEN "
                    "investigator' for a token that should only scan and read",
                    p, ", ".join(map(str, roleless)), LEGACY_ROLE)
    return creds


class CredentialSource:
    """Token-file credentials plus the home's token table, re-read every `reload_s` seconds."""

    def __init__(self, static: Sequence[Credential] = (), store: TokenStore | None = None,
                 reload_s: float = 2.0) -> None:
        self.static = list(static)
        self.store = store
        self.reload_s = reload_s
        self._creds: list[Credential] = []
        self._at = -1e9
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether calls need a token: a token file, or a token table (even an empty one)."""
        return bool(self.static) or (self.store is not None and self.store.exists())

    def current(self) -> list[Credential]:
        now = time.monotonic()
        with self._lock:
            if self.store is not None and now - self._at >= self.reload_s:
                self._creds = self.static + [Credential(d, role, name)
                                             for name, role, d in self.store.active()]
                self._at = now
            elif self.store is None:
                self._creds = self.static
            return self._creds


def bearer(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The token of an `authorization: Bearer TOKEN` header, if any."""
    for k, v in metadata or ():
        if k.lower() == "authorization":
            v = v.decode(errors="replace") if isinstance(v, bytes) else str(v)
            scheme, _, token = v.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def check(creds: Sequence[Credential], token: str | None) -> Credential | None:
    """The matching credential, comparing against all entries in constant time."""
    if token is None:
        return None
    d = digest(token)
    found = None
    for c in creds:
        if hmac.compare_digest(c.digest, d):
            found = c
    return found


def allowed(cred: Credential, method: str) -> bool:
    return role_at_least(cred.role, needed_role(method))
