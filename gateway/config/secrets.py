"""The secrets a config holds, found and masked for showing (logs, `config check`, /stats)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

URL_MASK = "***"
# Query parameters that carry a password (redis-py reads `?password=` from redis and unix URLs).
_PASSWORD_PARAMS = frozenset({"password"})
# The password of a URL's user info, for URLs urlsplit cannot parse.
_USERINFO_PASSWORD = re.compile(r"(//[^/?#@:]*:)([^/?#@]*)@")


def url_passwords(url: str) -> list[str]:
    """The passwords written in `url` (user info and `password=` query parameters), as written
    and percent-decoded."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:  # unparseable (a stray '['): the user info's password, if any
        written = [m.group(2) for m in _USERINFO_PASSWORD.finditer(url)]
    else:
        query = parse_qsl(parts.query, keep_blank_values=True)
        written = [parts.password or ""]
        written += [value for key, value in query if key in _PASSWORD_PARAMS]
    found = []
    for password in written:
        found += [password, unquote(password)]
    return list(dict.fromkeys(p for p in found if p))


# Shorter secrets are not searched for in shown text: they would mask ordinary words.
MIN_REDACTED_SECRET = 4


def redact(value: Any, secrets: Iterable[str], mask: str) -> Any:
    """`value` (a string, or dicts and lists of them, keys included) with every secret of
    MIN_REDACTED_SECRET characters or more replaced by `mask`, the longest first."""
    keys = sorted({s for s in secrets if len(s) >= MIN_REDACTED_SECRET}, key=len, reverse=True)
    return _redact(value, keys, mask)


def _redact(value: Any, keys: list[str], mask: str) -> Any:
    if isinstance(value, str):
        for key in keys:
            value = value.replace(key, mask)
        return value
    if isinstance(value, dict):
        return {_redact(k, keys, mask): _redact(v, keys, mask) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, keys, mask) for v in value]
    return value


def mask_url(url: str) -> str:
    """`url` for showing: each password in it (see url_passwords) replaced by URL_MASK."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unparseable (a stray '['): mask whatever follows a user name's ':'
        return _USERINFO_PASSWORD.sub(lambda m: f"{m.group(1)}{URL_MASK}@", url)
    if not url_passwords(url):
        return url
    netloc = parts.netloc
    if parts.password:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{URL_MASK}@{host}"
    # Other parameters stay exactly as written.
    query = "&".join(
        f"{key}={URL_MASK}" if unquote(key) in _PASSWORD_PARAMS else piece
        for piece in parts.query.split("&")
        for key in [piece.partition("=")[0]]
    )
    # Rebuilt by hand: urlunsplit drops the empty authority of unix:///path URLs.
    masked = f"{parts.scheme}://{netloc}{parts.path}"
    masked += f"?{query}" if query else ""
    return masked + (f"#{parts.fragment}" if parts.fragment else "")
