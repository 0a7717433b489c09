#!/bin/sh
# Grafana's login (compose): the role delay_grafana, LOGIN with the password in the secret grafana_db_password.
# What it may read is granted by the service's migrations (column by column, SELECT only), which also create the
# role, NOLOGIN, where this script has not run. Postgres runs the scripts of /docker-entrypoint-initdb.d once, when
# its data volume is first initialised; on a volume initialised before this script existed, or to change the
# password, run it again (it creates the role or updates it):
#   docker compose exec postgres /docker-entrypoint-initdb.d/10-grafana-role.sh
# Executable: the image's entrypoint then runs it rather than sourcing it into its own shell.
set -eu

file=${GRAFANA_DB_PASSWORD_FILE:-/run/secrets/grafana_db_password}
[ -r "$file" ] || {
  echo "10-grafana-role.sh: cannot read $file (the secret grafana_db_password, from GRAFANA_DB_PASSWORD)" >&2
  exit 1
}
password=$(cat "$file")
[ -n "$password" ] || {
  echo "10-grafana-role.sh: $file is empty: set GRAFANA_DB_PASSWORD" >&2
  exit 1
}

# :'password' is psql's quoting of a literal: any character of the password is safe. The server stores its
# SCRAM-SHA-256 verifier, not the password.
psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
  -v password="$password" <<'SQL'
select 'create role delay_grafana' where not exists (select from pg_roles where rolname = 'delay_grafana')
\gexec
alter role delay_grafana with login password :'password';
SQL
echo '10-grafana-role.sh: role delay_grafana may log in'
