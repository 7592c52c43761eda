#!/bin/sh
# Docker HEALTHCHECK of the demo app: rail's `healthcheck` when the image carries it
# (copied from the tools image), else a plain HTTP probe of /health/ (non-2xx fails).
set -eu
if command -v healthcheck >/dev/null 2>&1; then
    exec healthcheck --check application --timeout 5s --quiet
fi
exec python - <<'PY'
import os, sys, urllib.request
url = "http://127.0.0.1:%s/health/" % os.environ.get("PORT", "8000")
try:
    with urllib.request.urlopen(url, timeout=5) as response:
        sys.exit(0 if 200 <= response.status < 300 else 1)
except Exception as err:
    print("health check failed: %s" % err, file=sys.stderr)
    sys.exit(1)
PY
