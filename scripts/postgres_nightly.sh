#!/usr/bin/env bash
# The nightly job with Dagster's own storage (runs, event log, schedules, partitions) in
# PostgreSQL, as in production (deploy/dagster.prod.yaml), on a throwaway cluster:
#
#   1. installs the Debian `postgresql` package when no initdb is found (apt-get, as root);
#   2. starts a private cluster in a temporary folder (initdb + pg_ctl, loopback only, a free
#      port, password authentication; no systemd, nothing shared with a system cluster);
#   3. writes a DAGSTER_HOME from deploy/dagster.prod.yaml (dagster-postgres storage, queued
#      runs, the `duckdb` pool limit; connection settings and password from DAGSTER_PG_*
#      environment variables, never from the file);
#   4. runs `genre-dagster run` on a tiny generated world with the fake OpenAI-compatible LLM
#      server of the tests (tests/llm_fakes.py);
#   5. checks with psql that the runs, asset materializations, checks and day partitions are in
#      PostgreSQL and that no SQLite storage was created; prints a summary and one line
#      `RESULT {json}`; stops the cluster and removes the folder.
#
# Usage: scripts/postgres_nightly.sh [--job nightly_refresh|ingest_day] [--keep]
#   --job   job for the newest day (default nightly_refresh: the whole graph, ~3 min here;
#           ingest_day: ingestion only, ~1 min)
#   --keep  keep the temporary folder (logs, DuckDB file, reports) for inspection
# Environment: PYTHON (default .venv/bin/python).
# Exit codes: 0 verified; 1 failed; 77 PostgreSQL missing and not installable here (skip).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
JOB="nightly_refresh"
KEEP=0
SKIP=77
while [ $# -gt 0 ]; do
    case "$1" in
        --job) JOB="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) echo "usage: $0 [--job nightly_refresh|ingest_day] [--keep]" >&2; exit 1 ;;
    esac
done
log() { echo "[postgres_nightly] $*"; }

# ------------------------------------------------------------------ PostgreSQL binaries
find_pg_bin() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return 0
    fi
    return 1
}

PG_BIN="$(find_pg_bin || true)"
if [ -z "$PG_BIN" ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "PostgreSQL (initdb) is not installed and there is no apt-get to install it" >&2
        exit $SKIP
    fi
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if sudo -n true 2>/dev/null; then SUDO="sudo"; else
            echo "PostgreSQL is not installed; installing it needs root (apt-get)" >&2
            exit $SKIP
        fi
    fi
    log "installing the Debian postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    if ! { $SUDO apt-get update -qq && \
           $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }; then
        echo "apt-get could not install postgresql" >&2
        exit $SKIP
    fi
    PG_BIN="$(find_pg_bin)"
fi
if ! "$PYTHON" -c "import dagster_postgres" 2>/dev/null; then
    echo "dagster-postgres is missing from $PYTHON's environment" \
         "(pip install dagster-postgres==0.29.27)" >&2
    exit 1
fi

# PostgreSQL refuses to run as root: the cluster then belongs to the `postgres` system user
# (created by the Debian package).
if [ "$(id -u)" -eq 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
        echo "running as root, but there is no 'postgres' user to own the cluster" >&2
        exit 1
    fi
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

# ------------------------------------------------------------------ throwaway cluster
WORK="$(mktemp -d -t genre-pg.XXXXXX)"
chmod 755 "$WORK"
PGROOT="$WORK/pg"  # data, sockets and server log: owned by the cluster's user
PGDATA="$PGROOT/data"
SOCKETS="$PGROOT/sockets"
PGLOG="$PGROOT/postgres.log"
mkdir -p "$PGDATA" "$SOCKETS"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$PGROOT"
chmod 700 "$PGDATA"
STARTED=0

cleanup() {
    local code=$?
    if [ "$STARTED" = 1 ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
        log "cluster stopped"
    fi
    if [ "$KEEP" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PGPORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
PGUSER="genre"
PGDATABASE="dagster"
DAGSTER_PG_PASSWORD="$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))')"
PWFILE="$PGROOT/pwfile"
( umask 077; printf '%s\n' "$DAGSTER_PG_PASSWORD" > "$PWFILE" )
[ "$(id -u)" -eq 0 ] && chown postgres: "$PWFILE"

SECONDS=0
log "initdb in $PGDATA ($("$PG_BIN/postgres" --version))"
as_pg "$PG_BIN/initdb" -D "$PGDATA" -U "$PGUSER" --pwfile="$PWFILE" -E UTF8 --locale=C \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 >"$WORK/initdb.log" 2>&1 \
    || { cat "$WORK/initdb.log" >&2; exit 1; }
rm -f "$PWFILE"
# Loopback only, private socket folder; durability settings off: the cluster is thrown away.
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -t 60 -o \
    "-c listen_addresses=127.0.0.1 -p $PGPORT -k $SOCKETS -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { cat "$PGLOG" >&2; exit 1; }
STARTED=1
export PGHOST=127.0.0.1 PGPORT PGUSER PGPASSWORD="$DAGSTER_PG_PASSWORD"
"$PG_BIN/createdb" "$PGDATABASE"
log "PostgreSQL on 127.0.0.1:$PGPORT, database $PGDATABASE ready after ${SECONDS}s"

# ------------------------------------------------------------------ Dagster instance
# The production instance file itself (deploy/dagster.prod.yaml), with two local changes: no
# `sslmode=require` (the throwaway cluster has no certificate) and compute logs under DAGSTER_HOME.
export DAGSTER_HOME="$WORK/dagster_home"
export DAGSTER_PG_HOST=127.0.0.1 DAGSTER_PG_PORT="$PGPORT" DAGSTER_PG_USERNAME="$PGUSER"
export DAGSTER_PG_PASSWORD DAGSTER_PG_DB="$PGDATABASE"
mkdir -p "$DAGSTER_HOME"
"$PYTHON" - "$ROOT/deploy/dagster.prod.yaml" "$DAGSTER_HOME" <<'PY'
import sys
from pathlib import Path

import yaml

source, home = Path(sys.argv[1]), Path(sys.argv[2])
config = yaml.safe_load(source.read_text())
config["storage"]["postgres"]["postgres_db"].pop("params", None)
config["compute_logs"]["config"]["base_dir"] = str(home / "compute_logs")
header = f"# {source.name} as run by scripts/postgres_nightly.sh (no SSL, local compute logs)\n"
(home / "dagster.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False))
PY

# ------------------------------------------------------------------ the nightly run
export GENRE_ENV=local
export GENRE_DATA_DIR="$WORK/data"
export GENRE_SOURCE=mind
export GENRE_SOURCE_PATH="$WORK/mind"
export GENRE_LANDING_DIR="$WORK/landing"
export GENRE_LLM_BACKEND=openai
export GENRE_LLM_MODEL=fake
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DBT_SEND_ANONYMOUS_USAGE_STATS=false
export PATH="$(dirname "$PYTHON"):$PATH"
RUN_STARTED=$SECONDS
log "genre-dagster run --job $JOB on a tiny generated world (fake LLM server)"
( cd "$ROOT" && "$PYTHON" - "$ROOT" "$WORK/mind" "$JOB" <<'PY'
import os
import sys
from pathlib import Path

root, world, job = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
sys.path.insert(0, os.path.join(root, "tests"))  # the fake LLM server of the tests

from llm_fakes import fake_llm_server

from genre_dagster.demo import DemoWorldConfig, generate_world

generate_world(
    DemoWorldConfig(n_news=500, n_users=300, n_days=4, impressions_per_day=120, seed=11), world
)
with fake_llm_server() as server:
    os.environ["GENRE_LLM_BASE_URL"] = server.base_url
    from genre_dagster.cli import main

    sys.exit(main(["run", "--job", job]))
PY
) 2>"$WORK/run.stderr" || {
    tail -n 40 "$WORK/run.stderr" >&2
    echo "genre-dagster run failed against PostgreSQL" >&2
    exit 1
}
RUN_SECONDS=$((SECONDS - RUN_STARTED))

# ------------------------------------------------------------------ verification
RESULT="$("$PG_BIN/psql" -d "$PGDATABASE" -X -A -t -v ON_ERROR_STOP=1 <<'SQL'
select json_build_object(
  'runs_by_status', (select coalesce(json_object_agg(status, n), '{}')
                     from (select status, count(*) n from runs group by status) s),
  'runs_by_job', (select coalesce(json_object_agg(pipeline_name, n), '{}')
                  from (select pipeline_name, count(*) n from runs group by pipeline_name) j),
  'events', (select count(*) from event_logs),
  'materializations', (select count(*) from event_logs
                       where dagster_event_type = 'ASSET_MATERIALIZATION'),
  'materialized_assets', (select count(distinct asset_key) from event_logs
                          where dagster_event_type = 'ASSET_MATERIALIZATION'),
  'check_evaluations', (select count(*) from event_logs
                        where dagster_event_type = 'ASSET_CHECK_EVALUATION'),
  'asset_keys', (select count(*) from asset_keys),
  'day_partitions', (select count(*) from dynamic_partitions
                     where partitions_def_name = 'behavior_days'),
  'materialized_keys', (select coalesce(json_agg(distinct asset_key order by asset_key), '[]')
                        from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION')
);
SQL
)"
SQLITE="$(find "$DAGSTER_HOME" -name '*.db' | wc -l)"
"$PYTHON" - "$RESULT" "$SQLITE" "$JOB" "$RUN_SECONDS" "$SECONDS" <<'PY'
import json
import sys

result = json.loads(sys.argv[1])
sqlite_files, job = int(sys.argv[2]), sys.argv[3]
result.update(
    job=job, sqlite_files=sqlite_files, run_seconds=int(sys.argv[4]), total_seconds=int(sys.argv[5])
)
# event_logs.asset_key holds AssetKey.to_string(): a JSON list such as ["raw", "news"]
keys = [json.loads(k) for k in result.pop("materialized_keys")]
result["materialized_key_sample"] = sorted("/".join(k) for k in keys)[:12]
runs = result["runs_by_status"]
problems = []
if runs.get("SUCCESS", 0) == 0 or set(runs) != {"SUCCESS"}:
    problems.append(f"runs not all successful: {runs}")
if job not in result["runs_by_job"]:
    problems.append(f"no {job} run stored: {result['runs_by_job']}")
if result["materializations"] == 0 or ["raw", "news"] not in keys:
    problems.append("no asset materialization of raw/news stored")
if result["day_partitions"] == 0:
    problems.append("no day partition stored")
if sqlite_files:
    problems.append(f"{sqlite_files} SQLite file(s) in DAGSTER_HOME: storage is not PostgreSQL")
print(f"[postgres_nightly] runs by status: {runs}; by job: {result['runs_by_job']}")
print(
    f"[postgres_nightly] {result['materializations']} materializations of "
    f"{result['materialized_assets']} assets, {result['check_evaluations']} check evaluations, "
    f"{result['events']} events, {result['day_partitions']} day partitions, "
    f"{result['asset_keys']} asset keys; SQLite files: {sqlite_files}"
)
print("RESULT " + json.dumps(result, sort_keys=True))
for problem in problems:
    print(f"[postgres_nightly] FAILED: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
log "verified in ${SECONDS}s (run ${RUN_SECONDS}s)"
