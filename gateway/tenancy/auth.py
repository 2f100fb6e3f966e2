"""Authentication of the OpenAI surface (virtual keys) and the admin API (master key)."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from gateway.errors import AuthenticationFailed
from gateway.tenancy.directory import Directory, Principal
from gateway.tenancy.keys import hash_key


def bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it in the Authorization header as "
            "'Bearer fk-...'.", code="missing_api_key")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed("The Authorization header must be 'Bearer <key>'.")
    return token


def authenticate(directory: Directory, authorization: str | None) -> Principal:
    token = bearer(authorization)
    principal = directory.lookup(hash_key(token))
    if principal is None:
        # Never echo the key back, not even in part.
        raise AuthenticationFailed("Incorrect API key provided.")
    if principal.expires_at is not None and principal.expires_at <= datetime.now(UTC):
        raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
    return principal


def authenticate_master(master_key: str | None, authorization: str | None) -> None:
    token = bearer(authorization)
    # Compare digests so the comparison time depends on neither key's length.
    if master_key is None or not hmac.compare_digest(hash_key(token), hash_key(master_key)):
        raise AuthenticationFailed("The admin API requires the master key.",
                                   code="invalid_master_key")
