#!/bin/bash
# Install what pgvigil needs to build, test and run its demo (Debian 12, as root), then build.
set -euo pipefail
PKGS=(build-essential pkg-config libpq-dev libcurl4-openssl-dev libmicrohttpd-dev libyaml-dev
      libjansson-dev libcmocka-dev libzstd-dev liblz4-dev zlib1g-dev valgrind postgresql-15 postgresql-client-15 postgresql-server-dev-15
      etcd-server etcd-client
      iproute2 procps curl bc jq libssl-dev libldns-dev bind9 bind9-utils bind9-dnsutils
      haproxy python3 python3-psycopg2 clang libclang-rt-14-dev)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts a default cluster and etcd as services; pgvigil runs its own on other ports,
# but free the well-known ones so the demo gets 5432 and 2379.
if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q online; then
    pg_lsclusters -h | awk '$4=="online"{print $1, $2}' | while read -r v c; do pg_ctlcluster "$v" "$c" stop || true; done
fi
for svc in etcd named haproxy; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then systemctl stop "$svc" || true; fi
done
cd "$(dirname "$0")/.."
make -s -j2 all
# the server modules (commit guard) go where PostgreSQL loads them from
make -s pgext-install >/dev/null
echo "setup: built $(pwd)/build/pgvigil and installed the server modules in $(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)"
