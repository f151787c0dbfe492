#!/bin/sh
# `postgres`: initialise $PGDATA once (superuser $POSTGRES_USER with $POSTGRES_PASSWORD, database
# $POSTGRES_DB, password auth from the network), then run the server as the postgres user.
# Anything else (psql, createdb, sh -c ...) runs as given.
set -eu
if [ "${1:-}" != "postgres" ]; then
    exec "$@"
fi
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
    user="${POSTGRES_USER:-postgres}"
    printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pwfile
    chown postgres /tmp/pwfile
    runuser -u postgres -- initdb -D "$PGDATA" -U "$user" --pwfile=/tmp/pwfile -A scram-sha-256 -E UTF8 >/dev/null
    rm -f /tmp/pwfile
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != "postgres" ]; then
        runuser -u postgres -- postgres --single -D "$PGDATA" postgres >/dev/null <<SQL
CREATE DATABASE "$POSTGRES_DB" OWNER "$user";
SQL
    fi
fi
exec runuser -u postgres -- postgres -D "$PGDATA" -c listen_addresses='*' -c fsync=off
