#!/usr/bin/env bash
# `make split`: the split deployment on this machine. Every role is its own `scopehub` process;
# the edge (`scopehub frontend`) is the only one users and probes talk to, on $LISTEN. One shared
# database: the SQLite file in $DATA_DIR, or $DATABASE_URL (postgres://…). Ctrl-C stops them all.
set -euo pipefail

BIN=${BIN:-./target/release/scopehub}
DATA_DIR=${DATA_DIR:-./data}
LISTEN=${LISTEN:-127.0.0.1:4040}
HOST=${LISTEN%:*}
# The roles behind the edge listen on the next ports (override with SPLIT_PORTS="a b c d e f").
read -r USERS_PORT PROVISIONING_PORT UI_PORT SHARD_A_PORT SHARD_B_PORT MONITORING_PORT <<<"${SPLIT_PORTS:-4041 4042 4043 4044 4045 4046}"
DIST_DIR=${DIST_DIR:-dist}

mkdir -p "$DATA_DIR"
export SCOPEHUB_DATABASE_URL=${DATABASE_URL:-sqlite://$DATA_DIR/scopehub.db}
# The secret the edge signs identities with, shared by every role; generated once, kept private.
secret_file=$DATA_DIR/internal-secret
if [ ! -s "$secret_file" ]; then
    (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$secret_file")
fi
SCOPEHUB_INTERNAL_SECRET=$(cat "$secret_file")
export SCOPEHUB_INTERNAL_SECRET
export SCOPEHUB_LOG=${SCOPEHUB_LOG:-info}

users=http://$HOST:$USERS_PORT
provisioning=http://$HOST:$PROVISIONING_PORT
ui=http://$HOST:$UI_PORT
shards="shard-a=http://$HOST:$SHARD_A_PORT,shard-b=http://$HOST:$SHARD_B_PORT"
monitoring=http://$HOST:$MONITORING_PORT
public=http://$LISTEN/

pids=()
stop() {
    trap - INT TERM EXIT
    if [ ${#pids[@]} -gt 0 ]; then
        kill -INT "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
}
trap stop INT TERM EXIT

"$BIN" migrate
start() {
    "$BIN" "$@" &
    pids+=($!)
}
start users --listen "$HOST:$USERS_PORT" --public-url "$public"
start collector --shard shard-a --listen "$HOST:$SHARD_A_PORT" --public-url "$public" \
    --users-url "$users" --provisioning-url "$provisioning"
start collector --shard shard-b --listen "$HOST:$SHARD_B_PORT" --public-url "$public" \
    --users-url "$users" --provisioning-url "$provisioning"
start provisioning --listen "$HOST:$PROVISIONING_PORT" --users-url "$users" --collector-shard "$shards"
start ui --listen "$HOST:$UI_PORT" --dist-dir "$DIST_DIR"
start monitoring --listen "$HOST:$MONITORING_PORT" --users-url "$users" --target "users=$users" \
    --target "provisioning=$provisioning" --target "ui=$ui" --target "collector=http://$HOST:$SHARD_A_PORT" \
    --target "collector=http://$HOST:$SHARD_B_PORT" --target "frontend=http://$LISTEN"
start frontend --listen "$LISTEN" --public-url "$public" --users-url "$users" \
    --provisioning-url "$provisioning" --ui-url "$ui" --monitoring-url "$monitoring" --collector-shard "$shards"

cat <<MSG

Scopehub's split deployment is starting at $public (users $users, provisioning $provisioning,
ui $ui, collector shards $shards, monitoring $monitoring). Ctrl-C stops every role.
Make yourself the site admin (prints a one-time login link):
  $BIN admin create --email you@example.com --database-url '$SCOPEHUB_DATABASE_URL' --public-url $public

MSG
# One role exiting stops the deployment.
wait -n "${pids[@]}"
