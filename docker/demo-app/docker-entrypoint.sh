#!/bin/sh
# Container entry point of the demo app: optional start-up steps, then the command.
#   RUN_MIGRATIONS=1   apply migrations first (off by default: deploys run them)
#   COLLECTSTATIC=1    copy static files into STATIC_ROOT (the shared volume) first
set -eu
cd /app
if [ "${RUN_MIGRATIONS:-0}" = "1" ]; then
    python manage.py migrate --noinput
fi
if [ "${COLLECTSTATIC:-0}" = "1" ]; then
    python manage.py collectstatic --noinput -v 0
fi
exec "$@"
