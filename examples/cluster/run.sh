#!/usr/bin/env bash
# `make cluster-demo`: three gateway replicas sharing one Redis, behind nginx, with the demo upstreams,
# all on loopback (--insecure-dev: callers are not verified). Prints the URL; Ctrl-C stops everything
# and removes the demo's temporary folder.
#
#   nginx 127.0.0.1:8090  ->  replicas 127.0.0.1:8111, 8112, 8113  ->  weather (8101), notes and time (stdio)
#                               \-> redis-server 127.0.0.1:6391 (rate limits, revocations, registry and scopes)
#
# Ports: CLUSTER_DEMO_PORT (nginx), CLUSTER_DEMO_REDIS_PORT, CLUSTER_DEMO_REPLICA_PORT (the first replica's).
set -euo pipefail
cd "$(dirname "$0")/../.."

port=${CLUSTER_DEMO_PORT:-8090}
redis_port=${CLUSTER_DEMO_REDIS_PORT:-6391}
first_replica=${CLUSTER_DEMO_REPLICA_PORT:-8111}
deadline=${CLUSTER_DEMO_STARTUP_SECONDS:-90}
work=$(mktemp -d -t mcp-cluster-demo.XXXXXX)
pids=()

stop() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
    echo "cluster-demo: stopped" >&2
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for FILE PATTERN WHAT: until FILE holds a line matching PATTERN (or give up after $deadline s).
wait_for() {
    local waited=0
    until grep -q "$2" "$1" 2>/dev/null; do
        if (( waited >= deadline * 10 )); then
            echo "cluster-demo: $3 did not start within ${deadline} s; its log:" >&2
            tail -n 20 "$1" >&2 || true
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save "" --appendonly no \
    --protected-mode yes --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
python -m examples.servers.weather --host 127.0.0.1 --port 8101 --log-level warning >"$work/weather.log" 2>&1 &
pids+=($!)
wait_for "$work/redis.log" "Ready to accept connections" "redis-server"
wait_for "$work/weather.log" "^READY" "the weather upstream"

replicas=()
for index in 0 1 2; do replicas+=("\"127.0.0.1:$((first_replica + index))\""); done
replica_list=$(IFS=,; echo "${replicas[*]}")
worker_user=$([ "$(id -u)" = 0 ] && echo "user: root" || echo "")

for index in 0 1 2; do
    folder="$work/replica-$index"
    mkdir -p "$folder"
    cp configs/servers.yaml "$folder/servers.yaml"  # each its own copy: admin changes reach the others via Redis
    cat >"$folder/gateway.yaml" <<YAML
host: 127.0.0.1
port: $((first_replica + index))
servers_file: servers.yaml
data_dir: data
log_level: warning
cluster:
  redis_url: redis://127.0.0.1:$redis_port/0
nginx:
  listen: 127.0.0.1:$port
  gateway_replicas: [$replica_list]
  prefix: $work/nginx
  worker_processes: 1
  $worker_user
YAML
    python -m aggregator serve --config "$folder/gateway.yaml" --insecure-dev >"$folder/stdout.log" 2>"$folder/gateway.log" &
    pids+=($!)
done
for index in 0 1 2; do wait_for "$work/replica-$index/gateway.log" "^READY" "replica $index"; done

python -m aggregator nginx render --config "$work/replica-0/gateway.yaml" >"$work/render.log" 2>&1 \
    || { echo "cluster-demo: nginx render failed:" >&2; cat "$work/render.log" >&2; exit 1; }
nginx -p "$work/nginx/" -c "$work/nginx/nginx.conf" -g "daemon off; error_log stderr notice;" >"$work/nginx.log" 2>&1 &
pids+=($!)
wait_for "$work/nginx.log" "start worker process" "nginx"

cat >&2 <<TEXT
cluster-demo: READY http://127.0.0.1:$port/mcp
  three replicas (127.0.0.1:${first_replica}-$((first_replica + 2))) share redis://127.0.0.1:$redis_port behind nginx;
  logs in $work. Ctrl-C stops everything.
TEXT
echo "READY http://127.0.0.1:$port/mcp"
sleep infinity &
pids+=($!)
wait $!
