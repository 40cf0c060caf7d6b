#!/usr/bin/env bash
# Installs the Debian packages that ward's tests start or call, when missing:
# a PostgreSQL server, SoftHSM2 and pkcs11-tool, openssl and curl; with
# --bench also PgBouncer, which the benchmarks compare with.
set -euo pipefail

need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || need+=(opensc)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
# The benchmarks compare the masking proxy with PgBouncer.
if [ "${1:-}" = "--bench" ]; then
  command -v pgbouncer >/dev/null 2>&1 || ls /usr/sbin/pgbouncer >/dev/null 2>&1 || need+=(pgbouncer)
fi

if [ "${#need[@]}" -eq 0 ]; then
  exit 0
fi

echo "make test: installing missing packages with apt-get: ${need[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "make test: installed ${need[*]}"
