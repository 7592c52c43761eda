"""Plain views: the JSON health check and a small index."""

import time
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

from . import maintenance

MAX_DELAY_MS = 10_000


def _error_message(err):
    # First line only: driver messages can run over several lines of hints.
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _timed(check):
    started = time.perf_counter()
    try:
        extra = check() or {}
        result = {"status": "ok"}
        result.update(extra)
    except Exception as err:  # noqa: BLE001 - every failure is reported, none escapes
        result = {"status": "error", "message": _error_message(err)}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return result


def _check_database():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            row = cursor.fetchone()
    except Exception:
        # Drop a broken connection so the next request reconnects.
        connection.close()
        raise
    if row != (1,):
        raise RuntimeError(f"SELECT 1 returned {row!r}")
    return None


def _check_cache():
    # A key that is gone when read back was cleared by someone else between the two calls (a deploy's
    # cache clear): the cache answered both times, so that is not a failure; one more round tells.
    for _ in range(2):
        key = f"rail:health:{uuid.uuid4().hex}"
        value = uuid.uuid4().hex
        cache.set(key, value, timeout=30)
        read_back = cache.get(key)
        cache.delete(key)
        if read_back == value:
            return None
        if read_back is not None:
            raise RuntimeError("value read back differs from the value written")
    raise RuntimeError("the value written was gone when read back, twice")


def health(request):
    delay = request.GET.get("delay_ms")
    if delay is not None and settings.DEMO_ALLOW_DELAY:
        try:
            delay_ms = int(delay)
        except ValueError:
            return JsonResponse({"status": "error", "message": "delay_ms must be an integer"}, status=400)
        time.sleep(min(max(delay_ms, 0), MAX_DELAY_MS) / 1000)

    checks = {"database": _timed(_check_database), "cache": _timed(_check_cache)}
    healthy = all(check["status"] == "ok" for check in checks.values())
    body = {
        "status": "ok" if healthy else "error",
        "release": settings.RAIL_RELEASE,
        "checks": checks,
        # A cache that just failed would only make the key lookup wait for its timeout too.
        "maintenance": maintenance.describe(
            maintenance.active_states(check_redis=checks["cache"]["status"] == "ok")
        ),
    }
    response = JsonResponse(body, status=200 if healthy else 503)
    response["Cache-Control"] = "no-store"
    return response


def index(request):
    return JsonResponse({"app": "rail demo", "release": settings.RAIL_RELEASE, "graphql": "/graphql/"})
