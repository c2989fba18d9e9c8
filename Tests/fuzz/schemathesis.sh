#!/usr/bin/env bash
# Fuzzes a live procrefd from openapi.yaml with schemathesis (positive and negative data).
# Usage: Tests/fuzz/schemathesis.sh BIN_DIR PYTHON_VENV [MAX_EXAMPLES]
# The daemon runs on a temporary state dir and an ephemeral loopback port; API-defined
# services may only run /bin/true (security.api_programs), so generated definitions can
# never start anything harmful. Everything is removed on exit. Not fuzzed: stopDaemon, and
# serviceLogs, whose follow=true streams without end (ServiceLogsTests covers its input).
set -euo pipefail
bin_dir=$1
venv=$2
max_examples=${3:-40}
state=$(mktemp -d /tmp/prf-XXXXXX)
daemon=""
cleanup() {
    if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
        kill -TERM "$daemon"
        for _ in $(seq 1 300); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$daemon" 2>/dev/null || true
    fi
    rm -rf "$state"
}
trap cleanup EXIT
chmod 700 "$state"
cat > "$state/fuzz.toml" <<TOML
[security]
api_programs = ["/bin/true"]
api_users = ["root"]
[limits]
max_leases = 64
max_services = 200
max_wait_ms = 100
TOML
"$bin_dir/procrefd" serve --state-dir "$state" --port 0 --config "$state/fuzz.toml" --log-level error > "$state/ready" &
daemon=$!
for _ in $(seq 1 200); do [ -s "$state/ready" ] && break; sleep 0.05; done
port=$(sed -n 's/.*"tcp":"127.0.0.1:\([0-9]*\)".*/\1/p' "$state/ready")
[ -n "$port" ] || { echo "procrefd did not start"; exit 1; }
token=$(cat "$state/token")
"$venv/bin/st" run openapi.yaml \
    --url "http://127.0.0.1:$port" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection \
    --phases examples,coverage,fuzzing,stateful \
    --mode all \
    --max-examples "$max_examples" \
    --exclude-operation-id stopDaemon \
    --exclude-operation-id serviceLogs \
    --request-timeout 20 \
    --workers 1 \
    --seed 20261122 \
    --no-color
kill -0 "$daemon" || { echo "procrefd died during fuzzing"; exit 1; }
