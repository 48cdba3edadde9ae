#!/usr/bin/env bash
# Start a PostgreSQL server for the memory store tests (loopback only) and print, on stdout,
# the one line to eval:   export TREADLE_TEST_POSTGRES_DSN=postgresql://...
#
# Usage (as root, Debian):   eval "$(bash .ci/postgres.sh)"
# Idempotent: installs the Debian packages only when the server binaries are missing, creates a
# dedicated cluster ("treadle", separate from Debian's "main") only once, starts it when it is down,
# and (re)creates the test role and database only when missing. Every other line goes to stderr.
#
# Settings (environment): TREADLE_PG_PORT (default 55432), TREADLE_PG_CLUSTER (default treadle).
set -euo pipefail
exec 3>&1 1>&2 # fd 3 is the real stdout, for the export line only (closed for the server: 3>&-)

PORT="${TREADLE_PG_PORT:-55432}"
CLUSTER="${TREADLE_PG_CLUSTER:-treadle}"
ROLE=treadle_test
PASSWORD=treadle_test
DB=treadle_test
SOCKET_DIR=/var/run/postgresql

log() { echo "postgres.sh: $*"; }
die() {
    echo "postgres.sh: error: $*"
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "run me as root (I install packages and act as the postgres user)"

newest_server() { # the newest installed server version, e.g. 15 (empty when none)
    local d
    for d in /usr/lib/postgresql/*/bin/postgres; do
        [ -x "$d" ] && basename "$(dirname "$(dirname "$d")")"
    done | sort -V | tail -n 1
}

if ! command -v pg_ctlcluster >/dev/null || ! command -v pg_createcluster >/dev/null \
    || [ -z "$(newest_server)" ]; then
    log "installing PostgreSQL from the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends postgresql
fi

# the cluster's version and port: those it was created with, else the newest server installed
read -r VERSION CPORT < <(pg_lsclusters -h | awk -v c="$CLUSTER" '$2 == c { print $1, $3; exit }') || true
if [ -z "${VERSION:-}" ]; then
    VERSION="$(newest_server)"
    [ -n "$VERSION" ] || die "no PostgreSQL server binaries after the install"
    log "creating cluster $VERSION/$CLUSTER on 127.0.0.1:$PORT"
    pg_createcluster --start-conf=manual --port="$PORT" --locale=C.UTF-8 --encoding=UTF8 \
        "$VERSION" "$CLUSTER" -- --auth-local=peer --auth-host=scram-sha-256
elif [ "$CPORT" != "$PORT" ]; then
    log "cluster $VERSION/$CLUSTER exists with port $CPORT: using that port"
    PORT="$CPORT"
fi

# loopback only, written every time (Debian's postgresql.conf reads conf.d/ last, so this wins)
CONF_D="/etc/postgresql/$VERSION/$CLUSTER/conf.d"
install -d -o postgres -g postgres "$CONF_D"
printf "listen_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n" "$SOCKET_DIR" >"$CONF_D/treadle.conf"
chown postgres:postgres "$CONF_D/treadle.conf"

install -d -m 2775 -o postgres -g postgres "$SOCKET_DIR" # gone after a reboot on some machines

if pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$CLUSTER" status >/dev/null 2>&1; then
    log "cluster $VERSION/$CLUSTER already running"
    pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$CLUSTER" reload 3>&- </dev/null # picks up treadle.conf if changed
else
    log "starting cluster $VERSION/$CLUSTER"
    if ! pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$CLUSTER" start 3>&- </dev/null; then
        tail -n 20 "/var/log/postgresql/postgresql-$VERSION-$CLUSTER.log" || true
        die "the cluster did not start (is port $PORT taken? set TREADLE_PG_PORT)"
    fi
fi
pg_isready -q -h 127.0.0.1 -p "$PORT" -t 30 || die "the server does not answer on 127.0.0.1:$PORT"

as_postgres() { (cd / && runuser -u postgres -- "$@"); }
psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$PORT" -d postgres "$@"; }

if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
    log "creating role $ROLE"
    psql_admin -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'"
fi
psql_admin -c "ALTER ROLE $ROLE LOGIN PASSWORD '$PASSWORD'" # in case it was changed
if [ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    log "creating database $DB"
    psql_admin -c "CREATE DATABASE $DB OWNER $ROLE"
fi

DSN="postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
# prove the DSN works over TCP with a password, as the tests will use it
PGCONNECT_TIMEOUT=10 psql -X -q -d "$DSN" -tAc "SELECT 1" >/dev/null || die "cannot connect with $DSN"
log "ready: $DSN"
echo "export TREADLE_TEST_POSTGRES_DSN=$DSN" >&3
