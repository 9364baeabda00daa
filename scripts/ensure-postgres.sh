#!/usr/bin/env bash
# Make sure the PostgreSQL the tests use answers at 127.0.0.1:5432.
# LSENT_TEST_PG_ADMIN_URL points the tests elsewhere; then nothing is started.
set -euo pipefail
if [ -n "${LSENT_TEST_PG_ADMIN_URL:-}" ]; then
  exit 0
fi
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  exit 0
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "PostgreSQL is not running at 127.0.0.1:5432 and pg_ctlcluster is not installed" >&2
  exit 1
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
echo "starting PostgreSQL ${version}"
pg_ctlcluster --skip-systemctl-redirect "${version}" main start
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p 5432 && exit 0
  sleep 1
done
echo "PostgreSQL did not come up at 127.0.0.1:5432" >&2
exit 1
