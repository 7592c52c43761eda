"""Maintenance middleware: answers 503 while rail has put the site into maintenance.

/health/ always passes (it reports the maintenance state itself, so deploy
post-checks can run during maintenance), and so does a request whose
X-Rail-Maintenance-Bypass header equals the bypass token rail wrote.
"""

import html
import json

from django.conf import settings
from django.http import HttpResponse

from . import maintenance

BYPASS_HEADER = "X-Rail-Maintenance-Bypass"
EXEMPT_PATHS = frozenset({"/health/", "/health"})


class MaintenanceMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path in EXEMPT_PATHS:
            return self.get_response(request)
        states = maintenance.active_states()
        if not states or maintenance.bypass_allowed(states, request.headers.get(BYPASS_HEADER)):
            return self.get_response(request)
        return maintenance_response(request, states)


def maintenance_response(request, states):
    info = maintenance.describe(states)
    retry_after = info["retry_after"]
    body = {
        "status": "maintenance",
        "message": "the site is under maintenance, retry later",
        "reason": info.get("reason"),
        "since": info.get("since"),
        "expires_at": info.get("expires_at"),
        "retry_after": retry_after,
        "release": settings.RAIL_RELEASE,
    }
    accept = request.headers.get("Accept", "")
    if "text/html" in accept and "json" not in accept:
        reason = html.escape(body["reason"] or "maintenance")
        content = (
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Maintenance</title></head>"
            f"<body><h1>Under maintenance</h1><p>{reason}</p>"
            f"<p>Please retry in {retry_after} s.</p></body></html>"
        )
        response = HttpResponse(content, status=503, content_type="text/html; charset=utf-8")
    else:
        response = HttpResponse(json.dumps(body), status=503, content_type="application/json")
    response["Content-Length"] = str(len(response.content))
    response["Retry-After"] = str(retry_after)
    response["Cache-Control"] = "no-store"
    return response
