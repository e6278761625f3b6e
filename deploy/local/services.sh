#!/usr/bin/env bash
# Start PostgreSQL and Redis for the test suite when they are installed but not running; install them (Debian packages
# postgresql and redis-server) when they are missing, and Chromium (package chromium) for the dashboard's browser
# tests. Idempotent: on a machine where all three are there and both services answer on 127.0.0.1:5432 and
# 127.0.0.1:6379 it does nothing.
set -euo pipefail

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
installed_pg=0

missing=()
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The dashboard's browser tests drive Debian's Chromium through Playwright (never a downloaded browser).
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "services: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  [[ " ${missing[*]} " == *" postgresql "* ]] && installed_pg=1
fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "services: starting PostgreSQL $version" >&2
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi
if [ "$installed_pg" = 1 ]; then
  # A fresh Debian cluster asks for a password on TCP; the tests connect as postgres without one (trust on loopback
  # only, like our development machines).
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -q "ocpi-hub tests" "$hba"; then
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust # ocpi-hub tests\nhost all all ::1/128 trust # ocpi-hub tests' "$hba"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
fi
for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
pg_isready -h 127.0.0.1 -p 5432 -q || { echo "services: PostgreSQL did not start" >&2; exit 1; }

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "services: starting Redis" >&2
  mkdir -p /tmp/ocpi-hub-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp/ocpi-hub-redis \
    --logfile /tmp/ocpi-hub-redis/redis.log
fi
for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "services: Redis did not start" >&2; exit 1; }
echo "services: PostgreSQL and Redis are up" >&2
