# Sourced by up.sh and node.sh: running services in the background and watching them together.
# The sourcing script sets `role` (for messages) and `dir` (logs go to $dir/logs), and `owner`
# (a pid whose end ends the script; may be empty).
# shellcheck shell=bash

pids=()
log() { echo "$role: $*" >&2; }

start() { # name command...: runs the command in the background, logging to logs/name.log
  local name=$1; shift
  "$@" >"$dir/logs/$name.log" 2>&1 &
  pids+=($!)
}

fail() {
  log "$1; last lines of the logs in $dir/logs:"
  tail -n 20 "$dir"/logs/*.log >&2 || true
  exit 1
}

check_alive() {
  local pid
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || fail "a $role process (pid $pid) exited"; done
}

wait_for() { # seconds description command...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"
    check_alive
    sleep 0.2
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Stays until the owner process ends (or forever without one), failing if a service dies.
watch_until_owner_exits() {
  while :; do
    if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then exit 0; fi
    check_alive
    sleep 1 &
    wait $! || true
  done
}
