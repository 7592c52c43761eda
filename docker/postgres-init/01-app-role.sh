#!/bin/sh
# First start of the database container: the app's own role, owner of the database, with CREATEDB (rail's
# swap restore creates a database beside it and renames it in). The app and rail connect as it, never as
# the superuser: rail refuses to restore a dump as a superuser.
set -eu
psql -v ON_ERROR_STOP=1 -v pw="${APP_DB_PASSWORD:-app}" -v db="$POSTGRES_DB" \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE app LOGIN CREATEDB PASSWORD :'pw';
ALTER DATABASE :"db" OWNER TO app;
ALTER SCHEMA public OWNER TO app;
SQL
