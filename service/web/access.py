"""Who may read the worklist, and proof that a state-changing request came from our page.

Three modes:

- **loopback** (the default): bound to 127.0.0.1 or ::1, no login; the reader is "local".
- **users**: HTTP Basic login against PBKDF2-SHA256 password hashes from the settings.
- **proxy**: a trusted reverse proxy authenticates and names the reader in a header.

Binding to any other address without users or a proxy header is refused at start-up.
CSRF tokens are an HMAC of the reader's name under a per-process secret, sent back in a
form field or an ``X-CSRF-Token`` header.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

SCHEME = "pbkdf2_sha256"
ITERATIONS = 600_000


class AccessError(ValueError):
    """The web settings would expose the worklist without a login."""


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: str | None = None) -> str:
    """A storable hash: ``pbkdf2_sha256$<iterations>$<salt>$<base64 digest>``."""
    if not password:
        raise ValueError("the password must not be empty")
    salt = salt or secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"{SCHEME}${iterations}${salt}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant time; False if malformed)."""
    try:
        scheme, iterations, salt, expected = stored.split("$")
        if scheme != SCHEME:
            return False
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
        return hmac.compare_digest(base64.b64encode(digest).decode(), expected)
    except (ValueError, TypeError):
        return False


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True)
class Access:
    """How readers are identified.

    Parameters
    ----------
    host
        The address the web server binds to.
    users
        Reader name to password hash (see :func:`hash_password`).
    proxy_header
        Name of the header in which a trusted reverse proxy names the reader.

    Raises
    ------
    AccessError
        If ``host`` is not loopback and neither users nor a proxy header are set.
    """

    host: str = "127.0.0.1"
    users: Mapping[str, str] = field(default_factory=dict)
    proxy_header: str | None = None
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def __post_init__(self) -> None:
        for name, stored in self.users.items():
            if not stored.startswith(SCHEME + "$"):
                raise AccessError(
                    f"the password of web user {name!r} is not a {SCHEME} hash: make one "
                    "with `triage hash-password`"
                )
        if not is_loopback(self.host) and not self.users and not self.proxy_header:
            raise AccessError(
                f"refusing to serve the worklist on {self.host} without a login: patient "
                "data would be open to the network. Add web users (--web-user NAME:HASH, "
                "hash from `triage hash-password`), name a trusted proxy's header "
                "(--trusted-proxy-header), or bind to 127.0.0.1"
            )

    @property
    def mode(self) -> str:
        """``users``, ``proxy`` or ``loopback``."""
        return "users" if self.users else "proxy" if self.proxy_header else "loopback"

    def reader(self, headers: Mapping[str, str]) -> str | None:
        """The reader a request comes from, or None if it is not allowed in."""
        if self.users:
            return self._basic(headers.get("authorization", ""))
        if self.proxy_header:
            name = headers.get(self.proxy_header.lower(), "").strip()
            return name[:64] or None
        return "local"

    def _basic(self, header: str) -> str | None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            name, _, password = base64.b64decode(value).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        stored = self.users.get(name)
        return name if stored and verify_password(password, stored) else None

    def csrf_token(self, reader: str) -> str:
        """The token our pages embed for ``reader``."""
        return hmac.new(self.secret, reader.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, reader: str, token: str | None) -> bool:
        """Whether ``token`` is ``reader``'s."""
        return bool(token) and hmac.compare_digest(self.csrf_token(reader), str(token))
