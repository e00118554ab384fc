#!/usr/bin/env bash
# Starts the PostgreSQL and RabbitMQ that the tests use, installing them from Debian's
# packages when missing. Idempotent: a second run finds them up and returns at once.
#   PostgreSQL: postgres://trawl:trawl@127.0.0.1:5432/postgres (a superuser; tests create a database each)
#   RabbitMQ:   amqp://guest:guest@127.0.0.1:5672/%2f, management API on http://127.0.0.1:15672 (tests create a vhost
#               each; a start, not a second run, empties it)
# Usage: hack/services.sh
set -euo pipefail
log() { echo "services: $*" >&2; }

need=()
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
command -v rabbitmqctl >/dev/null || need+=(rabbitmq-server)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# PostgreSQL: the distribution's cluster, started without systemd.
read -r pg_version pg_cluster < <(pg_lsclusters --no-header | awk 'NR==1 {print $1, $2}')
if ! pg_lsclusters --no-header | awk 'NR==1 {print $4}' | grep -q online; then
  log "starting PostgreSQL $pg_version/$pg_cluster"
  pg_ctlcluster "$pg_version" "$pg_cluster" start
fi
for _ in $(seq 1 60); do
  su postgres -c "pg_isready -q -h 127.0.0.1 -p 5432" && break
  sleep 0.5
done
su postgres -c "psql -qAtc \"SELECT 1 FROM pg_roles WHERE rolname='trawl'\"" | grep -q 1 ||
  su postgres -c "psql -qc \"CREATE ROLE trawl LOGIN SUPERUSER PASSWORD 'trawl'\""

# RabbitMQ with the management plugin (tests and the operator read queue depths through it).
if ! rabbitmqctl -q status >/dev/null 2>&1; then
  log "starting RabbitMQ"
  # The tests' broker starts empty: every test makes a vhost of its own, and what runs that were
  # killed left behind is worth nothing but slows the start (a CI run found 3 300 queues from
  # interrupted benchmarks to recover, and the node had not booted after nine minutes).
  rm -rf "/var/lib/rabbitmq/mnesia/rabbit@$(hostname -s)" "/var/lib/rabbitmq/mnesia/rabbit@$(hostname -s)-feature_flags"
  rabbitmq-plugins -q --offline enable rabbitmq_management >/dev/null
  rabbitmq-server -detached
fi
# -detached returns before the node exists; wait for it to answer before asking it anything.
for _ in $(seq 1 120); do
  rabbitmqctl -q status >/dev/null 2>&1 && break
  sleep 0.5
done
rabbitmqctl -q await_startup --timeout 120 >/dev/null
for _ in $(seq 1 120); do
  curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null
log "PostgreSQL and RabbitMQ are up"
