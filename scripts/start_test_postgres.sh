#!/usr/bin/env bash
# Start Debian's PostgreSQL cluster (as the postgres user: postgres refuses to run as root) and create the
# test role and database the job-store tests use:
#   postgresql+asyncpg://mega_asr:mega_asr@127.0.0.1:5432/mega_asr_test
# Idempotent: an already running cluster, role or database is left as it is.
set -euo pipefail
cluster="$(pg_lsclusters --no-header | awk 'NR==1 {print $1" "$2}')"
if [ -z "$cluster" ]; then
  version="$(ls /usr/lib/postgresql | sort -n | tail -1)"
  pg_createcluster "$version" main >/dev/null
  cluster="$version main"
fi
# shellcheck disable=SC2086
set -- $cluster
if ! pg_lsclusters --no-header | awk -v v="$1" -v c="$2" '$1==v && $2==c {print $4}' | grep -q online; then
  pg_ctlcluster "$1" "$2" start
fi
as_postgres() { if [ "$(id -un)" = postgres ]; then "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi; }
for _ in $(seq 1 50); do as_postgres psql -qtAc "select 1" >/dev/null 2>&1 && break; sleep 0.2; done
if [ "$(as_postgres psql -qtAc "select 1 from pg_roles where rolname='mega_asr'")" != 1 ]; then
  as_postgres psql -qc "create role mega_asr login createdb password 'mega_asr'"
fi
if [ "$(as_postgres psql -qtAc "select 1 from pg_database where datname='mega_asr_test'")" != 1 ]; then
  as_postgres psql -qc "create database mega_asr_test owner mega_asr"
fi
echo "PostgreSQL ready: postgresql://mega_asr@127.0.0.1:5432/mega_asr_test"
