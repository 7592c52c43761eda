"""Tests of the demo app's maintenance flag handling and middleware.

Runs without PostgreSQL: the flag files are real files in a temporary directory and
Redis is pointed at a closed local port, which also exercises "Redis down = no key".

    python -m unittest discover -s docker/demo-app/tests
"""

import json
import os
import sys
import tempfile
import unittest
from datetime import datetime, timedelta, timezone
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
TMP = tempfile.TemporaryDirectory(prefix="demo-maintenance-")
FLAG = Path(TMP.name) / "flag.json"

os.environ.update(
    {
        "DJANGO_SETTINGS_MODULE": "demo.settings",
        "RAIL_MAINTENANCE_FILE": str(FLAG),
        "RAIL_RELEASE": "test",
        # Port 1 on loopback refuses connections at once: Redis is "down".
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/unused",
    }
)
sys.path.insert(0, str(SRC))

import django  # noqa: E402

django.setup()

from django.http import HttpResponse  # noqa: E402
from django.test import RequestFactory  # noqa: E402

from demo import maintenance  # noqa: E402
from demo.middleware import MaintenanceMiddleware  # noqa: E402


def rfc3339(moment):
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_flag(content):
    # Written beside and renamed, as rail does, so the cache sees a new inode.
    tmp = FLAG.with_suffix(".tmp")
    tmp.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    os.replace(tmp, FLAG)


def flag(expires_in=120, token="s3cret"):
    now = datetime.now(timezone.utc)
    return {
        "since": rfc3339(now),
        "run_id": "run-42",
        "reason": "deploy v2",
        "expires_at": rfc3339(now + timedelta(seconds=expires_in)),
        "bypass_token": token,
    }


class MaintenanceTests(unittest.TestCase):
    def setUp(self):
        FLAG.unlink(missing_ok=True)
        self.factory = RequestFactory(HTTP_HOST="localhost")
        self.middleware = MaintenanceMiddleware(lambda request: HttpResponse("app", status=200))

    def tearDown(self):
        FLAG.unlink(missing_ok=True)

    def call(self, path="/graphql/", **headers):
        return self.middleware(self.factory.post(path, data="{}", content_type="application/json", **headers))

    def test_no_flag_passes_through(self):
        self.assertEqual(self.call().status_code, 200)

    def test_flag_gives_503_with_retry_after_from_expiry(self):
        write_flag(flag(expires_in=120))
        response = self.call()
        self.assertEqual(response.status_code, 503)
        self.assertTrue(100 <= int(response["Retry-After"]) <= 121, response["Retry-After"])
        body = json.loads(response.content)
        self.assertEqual(body["status"], "maintenance")
        self.assertEqual(body["reason"], "deploy v2")
        self.assertNotIn("s3cret", response.content.decode())

    def test_health_always_passes(self):
        write_flag(flag())
        self.assertEqual(self.call("/health/").status_code, 200)

    def test_bypass_header_with_right_token_passes(self):
        write_flag(flag(token="s3cret"))
        self.assertEqual(self.call(HTTP_X_RAIL_MAINTENANCE_BYPASS="s3cret").status_code, 200)
        self.assertEqual(self.call(HTTP_X_RAIL_MAINTENANCE_BYPASS="wrong").status_code, 503)

    def test_flag_without_token_cannot_be_bypassed(self):
        document = flag()
        del document["bypass_token"]
        write_flag(document)
        self.assertEqual(self.call(HTTP_X_RAIL_MAINTENANCE_BYPASS="").status_code, 503)
        self.assertEqual(self.call(HTTP_X_RAIL_MAINTENANCE_BYPASS="anything").status_code, 503)

    def test_expired_flag_is_ignored(self):
        write_flag(flag(expires_in=-60))
        self.assertEqual(self.call().status_code, 200)

    def test_garbled_flag_fails_closed_with_retry_after_30(self):
        write_flag("{not json")
        response = self.call()
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response["Retry-After"], "30")

    def test_html_body_for_browsers(self):
        write_flag(flag())
        response = self.middleware(self.factory.get("/", HTTP_ACCEPT="text/html"))
        self.assertEqual(response.status_code, 503)
        self.assertIn("text/html", response["Content-Type"])

    def test_describe_hides_the_bypass_token(self):
        write_flag(flag(token="hidden-token"))
        info = maintenance.describe(maintenance.active_states())
        self.assertEqual(info["sources"], ["file"])
        self.assertEqual(info["run_id"], "run-42")
        self.assertNotIn("hidden-token", json.dumps(info))

    def test_redis_down_counts_as_no_key(self):
        # Only the (absent) flag file decides; the refused Redis connection does not fail the request.
        self.assertEqual(maintenance.active_states(), [])
        self.assertEqual(self.call().status_code, 200)


if __name__ == "__main__":
    unittest.main()
