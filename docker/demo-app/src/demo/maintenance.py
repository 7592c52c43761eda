"""Reading rail's two maintenance signals: the flag file and the Redis key.

Both carry the same JSON document, written by rail:
    {"since": RFC3339, "run_id": "...", "reason": "...",
     "expires_at": RFC3339, "bypass_token": "..."}

Rules:
- the flag file counts while it exists and its expires_at is not in the past;
  a file that cannot be read or parsed still counts (fail closed), with Retry-After 30;
- the Redis key counts while it exists (its TTL is the expiry); a Redis outage
  counts as "no key", so a broken cache never takes the site down by itself;
- the cost per request is one stat() and one Redis GET; after a Redis error the key
  is not looked at again for a short while, so a hanging Redis cannot slow every request.
"""

import hmac
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from django.conf import settings

logger = logging.getLogger(__name__)

# Retry-After when no expiry is known (garbled flag file, key without TTL or expires_at).
DEFAULT_RETRY_AFTER = 30
# How long to skip the Redis lookup after Redis failed.
REDIS_BACKOFF_SECONDS = 2.0
# The flag file is tiny; refuse to read anything large into memory.
MAX_FLAG_BYTES = 64 * 1024


@dataclass
class MaintenanceState:
    """One active maintenance signal."""

    source: str  # "file" or "redis"
    retry_after: int
    document: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def bypass_token(self):
        token = self.document.get("bypass_token")
        return token if isinstance(token, str) and token else None

    def public(self):
        """What may be shown to clients: everything except the bypass token."""
        info = {"source": self.source, "retry_after": self.retry_after}
        for key in ("since", "run_id", "reason", "expires_at"):
            value = self.document.get(key)
            if value is not None:
                info[key] = value
        if self.error:
            info["error"] = self.error
        return info


def parse_rfc3339(value):
    """Parse an RFC 3339 timestamp; naive values are taken as UTC."""
    if not isinstance(value, str) or not value:
        raise ValueError("not a timestamp")
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def seconds_until(expires_at, now):
    return max(1, math.ceil((expires_at - now).total_seconds()))


class _FlagCache:
    """Parsed flag file, re-read only when the file's identity or mtime changes."""

    def __init__(self):
        self._lock = threading.Lock()
        self._key = None
        self._parsed = None

    def load(self, path, stat):
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key == self._key:
                return self._parsed
        parsed = _read_flag(path, stat.st_size)
        with self._lock:
            self._key, self._parsed = key, parsed
        return parsed


def _read_flag(path, size):
    """Return (document, error): a dict on success, else an error text."""
    if size > MAX_FLAG_BYTES:
        return None, "flag file too large"
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FLAG_BYTES + 1)
        document = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        # Removed between stat() and open(): maintenance just ended.
        return None, None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return None, f"unreadable flag file: {type(err).__name__}"
    if not isinstance(document, dict):
        return None, "flag file is not a JSON object"
    return document, None


_flag_cache = _FlagCache()


def file_state(path, now=None):
    """The flag file's state, or None when there is no (unexpired) flag file."""
    if not path:
        return None
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        # Exists but cannot be looked at: fail closed.
        return MaintenanceState("file", DEFAULT_RETRY_AFTER, error=f"unreadable flag file: {err.strerror}")
    document, error = _flag_cache.load(path, stat)
    if document is None and error is None:
        return None
    if document is None:
        return MaintenanceState("file", DEFAULT_RETRY_AFTER, error=error)
    now = now or datetime.now(timezone.utc)
    if "expires_at" not in document or document["expires_at"] in (None, ""):
        return MaintenanceState("file", DEFAULT_RETRY_AFTER, document)
    try:
        expires_at = parse_rfc3339(document["expires_at"])
    except (TypeError, ValueError):
        return MaintenanceState("file", DEFAULT_RETRY_AFTER, document, error="invalid expires_at")
    if expires_at <= now:
        return None
    return MaintenanceState("file", seconds_until(expires_at, now), document)


class _RedisProbe:
    """Looks up the maintenance key, with a back-off after Redis errors."""

    def __init__(self):
        self._down_until = 0.0

    def state(self, key, now=None):
        if time.monotonic() < self._down_until:
            return None
        try:
            from django_redis import get_redis_connection

            client = get_redis_connection("default")
            raw = client.get(key)
            if raw is None:
                return None
            ttl = client.ttl(key)
        except Exception as err:  # noqa: BLE001 - any Redis failure means "no key"
            self._down_until = time.monotonic() + REDIS_BACKOFF_SECONDS
            logger.warning("maintenance key lookup failed, treating as off: %s", type(err).__name__)
            return None
        try:
            document = json.loads(raw)
            if not isinstance(document, dict):
                raise ValueError("not an object")
            error = None
        except (TypeError, ValueError, UnicodeDecodeError):
            document, error = {}, "maintenance key value is not a JSON object"
        if isinstance(ttl, int) and ttl > 0:
            retry_after = ttl
        else:
            retry_after = DEFAULT_RETRY_AFTER
            try:
                retry_after = seconds_until(
                    parse_rfc3339(document.get("expires_at")), now or datetime.now(timezone.utc)
                )
            except (TypeError, ValueError):
                pass
        return MaintenanceState("redis", retry_after, document, error)


_redis_probe = _RedisProbe()


def active_states(check_redis=True):
    """Every maintenance signal that is on right now (empty list: site is open)."""
    states = []
    flag = file_state(settings.RAIL_MAINTENANCE_FILE)
    if flag is not None:
        states.append(flag)
    key = _redis_probe.state(settings.RAIL_MAINTENANCE_KEY) if check_redis else None
    if key is not None:
        states.append(key)
    return states


def bypass_allowed(states, token):
    """True when the token matches the bypass token of every active signal."""
    if not token:
        return False
    for state in states:
        expected = state.bypass_token
        if expected is None or not hmac.compare_digest(token.encode(), expected.encode()):
            return False
    return True


def describe(states):
    """Maintenance info for /health/: None, or the signals without their tokens."""
    if not states:
        return None
    info = {"active": True, "sources": [state.source for state in states]}
    info.update(states[0].public())
    del info["source"]
    info["retry_after"] = max(state.retry_after for state in states)
    if len(states) > 1:
        info["signals"] = [state.public() for state in states]
    return info
