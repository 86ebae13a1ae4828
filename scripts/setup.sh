#!/bin/bash
# Install what pgvigil needs to build, test and run its demo (Debian 12, as root), then build.
set -euo pipefail
PKGS=(build-essential pkg-config libpq-dev libcurl4-openssl-dev libmicrohttpd-dev libyaml-dev
      libjansson-dev libcmocka-dev libzstd-dev libxxhash-dev liblz4-dev zlib1g-dev valgrind postgresql-15 postgresql-client-15 postgresql-server-dev-15
      etcd-server etcd-client
      iproute2 procps curl bc jq libssl-dev libldns-dev bind9 bind9-utils bind9-dnsutils
      haproxy python3 python3-psycopg2 clang libclang-rt-14-dev libfaketime)
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
# The S3-compatible server the S3 repository tests run (tests/integration/s3_server.js): s3rver,
# the maintained @20minutes fork, which checks AWS Signature Version 4 and does multipart uploads,
# from the npm registry into /opt/pgvigil-s3rver (node from Debian when there is none).
S3RVER_DIR=/opt/pgvigil-s3rver
S3RVER_VERSION=4.0.4
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "setup: installing nodejs npm"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [ "$(node -p "require('$S3RVER_DIR/node_modules/@20minutes/s3rver/package.json').version" 2>/dev/null)" != "$S3RVER_VERSION" ]; then
    echo "setup: installing s3rver $S3RVER_VERSION into $S3RVER_DIR"
    mkdir -p "$S3RVER_DIR"
    npm install --prefix "$S3RVER_DIR" --no-audit --no-fund --omit=dev --no-save --loglevel=error \
        "@20minutes/s3rver@$S3RVER_VERSION" >/dev/null
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
