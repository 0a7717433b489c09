#!/bin/sh
# One backup of the service's database: pg_dump's custom format (compressed; pg_restore reads it table by table)
# to BACKUP_DIR/delay-prediction-<UTC time>.dump, then the dumps older than RETENTION_DAYS deleted. Compose runs it
# weekly in its `backup` service, Kubernetes as the CronJob delay-prediction-backup (deploy/kubernetes/base/backup).
#
#   DATABASE_URL            the database, as libpq reads it (postgres://user@host:port/db); unset, pg_dump's PG*
#                           variables (PGHOST, PGUSER, PGDATABASE...) name it
#   DATABASE_PASSWORD_FILE  a file holding the password alone (compose's secret), for a URL without one
#   BACKUP_DIR              where the dumps go (default /backups)
#   RETENTION_DAYS          dumps older than this are deleted (default 90, the service's RETENTION_DAYS: no dump
#                           is kept longer than the service keeps a row; a row purged or erased stays in the
#                           dumps taken before, until they go)
#
# Exit 0: a dump is written whole and reads back. Exit 1: pg_dump failed or wrote nothing readable; no file is
# left under the dump's name. Exit 2: a setting is wrong. Old dumps are pruned on every run, failed or not: the
# retention is a promise about personal data, kept even while backups fail.
set -eu
# Dumps hold personal data (booking ids, predictions): readable by their owner only.
umask 077

fail() {
  code=$1
  shift
  echo "backup: $*" >&2
  exit "$code"
}

BACKUP_DIR=${BACKUP_DIR:-/backups}
RETENTION_DAYS=${RETENTION_DAYS:-90}
case $RETENTION_DAYS in
  '' | *[!0-9]* | 0*) fail 2 "RETENTION_DAYS must be a positive whole number of days (got '$RETENTION_DAYS')" ;;
esac
if [ ! -d "$BACKUP_DIR" ] || [ ! -w "$BACKUP_DIR" ]; then
  fail 2 "BACKUP_DIR $BACKUP_DIR is not a folder this user ($(id -u)) can write"
fi
if [ -n "${DATABASE_PASSWORD_FILE:-}" ]; then
  [ -r "$DATABASE_PASSWORD_FILE" ] || fail 2 "cannot read DATABASE_PASSWORD_FILE $DATABASE_PASSWORD_FILE"
  # libpq's own variable, for pg_dump alone: this script's environment, not the container's.
  PGPASSWORD=$(cat "$DATABASE_PASSWORD_FILE")
  export PGPASSWORD
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
name="delay-prediction-$stamp.dump"
# Written under another name and renamed once whole: a dump under its final name is always a complete one.
partial="$BACKUP_DIR/.$name.partial"
trap 'rm -f "$partial"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# Keeps no dump older than the retention, and no partial file of a run killed more than a day ago.
prune() {
  find "$BACKUP_DIR" -maxdepth 1 -type f -name 'delay-prediction-*.dump' -mmin +$((RETENTION_DAYS * 1440)) \
    -print -delete | sed 's/^/backup: deleted, older than the retention: /'
  find "$BACKUP_DIR" -maxdepth 1 -type f -name '.delay-prediction-*.dump.partial' -mmin +1440 -delete
}

set -- --format=custom --no-password --file="$partial"
if [ -n "${DATABASE_URL:-}" ]; then set -- "$@" --dbname="$DATABASE_URL"; fi
started=$(date +%s)
status=0
pg_dump "$@" || status=$?
if [ "$status" -ne 0 ]; then
  prune
  fail 1 "pg_dump failed (exit $status): no backup written"
fi
if [ ! -s "$partial" ]; then
  prune
  fail 1 'pg_dump wrote nothing: no backup written'
fi
# The whole archive reads back, every table's data decompressed: a truncated or foreign file does not.
if ! pg_restore --file=/dev/null "$partial"; then
  prune
  fail 1 'the dump does not read back (pg_restore): no backup written'
fi
# On disk before it takes its final name: a crash after the rename leaves a whole file, not an empty one.
sync "$partial"
mv -f "$partial" "$BACKUP_DIR/$name"
prune
bytes=$(wc -c <"$BACKUP_DIR/$name" | tr -d ' ')
echo "backup: wrote $BACKUP_DIR/$name ($bytes bytes, $(($(date +%s) - started)) s)"
