# A real BIND 9 (named) on 127.0.0.1 for DNS failover tests, sourced after lib.sh.
# start_bind serves zone example.test. (dynamic updates allowed with a TSIG key) on a free
# port; named is stopped by PID at exit (a CLEANUP_HOOKS entry of lib.sh).
#
#   source "$(dirname "$0")/lib.sh"; source "$(dirname "$0")/lib_bind.sh"
#   start_bind                              # exports BIND_PORT BIND_KEY BIND_SECRET BIND_ZONE
#   node_config 1 "$(bind_dns_yaml db.example.test. 127.0.0.1)"
#   wait_until 20 "record moved" dns_is db.example.test. 127.0.0.1

BIND_PID=""
BIND_PORT=""
BIND_ZONE="example.test."
BIND_KEY="pgvigil-key"
BIND_ALG="hmac-sha256"
BIND_SECRET=""
BIND_DIR=""

_bind_named() {
    local c
    for c in /usr/sbin/named /usr/local/sbin/named "$(command -v named 2>/dev/null)"; do
        [ -n "$c" ] && [ -x "$c" ] && { echo "$c"; return 0; }
    done
    return 1
}

# start_bind: start named in $T_DIR/bind and wait until it answers for the zone
start_bind() {
    local named
    named=$(_bind_named) || fail "named not found: install bind9 (scripts/setup.sh)"
    command -v dig >/dev/null || fail "dig not found: install bind9-dnsutils (scripts/setup.sh)"
    [ -z "$BIND_PORT" ] && alloc_port BIND_PORT
    BIND_DIR="$T_DIR/bind"
    mkdir -p "$BIND_DIR"
    [ -z "$BIND_SECRET" ] && BIND_SECRET=$(head -c 32 /dev/urandom | base64)
    cat >"$BIND_DIR/named.conf" <<CONF
options {
  directory "$BIND_DIR";
  listen-on port $BIND_PORT { 127.0.0.1; };
  listen-on-v6 { none; };
  pid-file "$BIND_DIR/named.pid";
  session-keyfile "$BIND_DIR/session.key";
  recursion no;
  dnssec-validation no;
  notify no;
};
controls { };
key "$BIND_KEY" { algorithm $BIND_ALG; secret "$BIND_SECRET"; };
zone "${BIND_ZONE%.}" {
  type primary;
  file "$BIND_DIR/zone.db";
  update-policy { grant $BIND_KEY zonesub ANY; };
};
CONF
    # a restart keeps the zone file: its journal (zone.db.jnl) holds the updates made so far
    if [ ! -f "$BIND_DIR/zone.db" ]; then
        cat >"$BIND_DIR/zone.db" <<ZONE
\$TTL 60
@ IN SOA ns1.$BIND_ZONE admin.$BIND_ZONE 1 60 60 600 60
@ IN NS ns1.$BIND_ZONE
ns1 IN A 127.0.0.1
ZONE
    fi
    # lib.sh's cleanup runs its hooks before it removes (or keeps) $T_DIR
    [[ " ${CLEANUP_HOOKS[*]} " == *" stop_bind "* ]] || CLEANUP_HOOKS+=(stop_bind)
    # -g: foreground, log to stderr; named only changes user when given -u
    "$named" -g -n 1 -c "$BIND_DIR/named.conf" >>"$T_DIR/bind.log" 2>&1 &
    BIND_PID=$!
    export BIND_PORT BIND_KEY BIND_SECRET BIND_ZONE BIND_ALG BIND_PID
    local deadline=$(( $(date +%s) + 20 ))
    until [ -n "$(dig @127.0.0.1 -p "$BIND_PORT" +short +time=1 +tries=1 "$BIND_ZONE" SOA 2>/dev/null)" ]; do
        kill -0 "$BIND_PID" 2>/dev/null || { BIND_PID=""; fail "named exited during startup (see bind.log)"; }
        [ "$(date +%s)" -lt "$deadline" ] || fail "named did not answer on port $BIND_PORT within 20 s"
        sleep 0.2
    done
    log "named up on 127.0.0.1:$BIND_PORT (pid $BIND_PID)"
}

# stop_bind: stop named (SIGTERM, then SIGKILL after 5 s); the zone and its journal stay, so
# start_bind serves the same data again
stop_bind() {
    local p="$BIND_PID"
    [ -z "$p" ] && return 0
    kill -CONT "$p" 2>/dev/null
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    BIND_PID=""
}

# dns_lookup NAME [TYPE]: the record's values, one a line (dig +short); TYPE defaults to A
dns_lookup() {
    dig @127.0.0.1 -p "$BIND_PORT" +short +time=1 +tries=2 "$1" "${2:-A}" 2>/dev/null
}

# dns_is NAME VALUE [TYPE]: true when the RRset is exactly VALUE (for wait_until)
dns_is() {
    [ "$(dns_lookup "$1" "${3:-A}")" = "$2" ]
}

# bind_set NAME VALUE [TYPE]: replace the RRset with nsupdate (as an old primary would have
# left it); TYPE defaults to A
bind_set() {
    local name="$1" value="$2" type="${3:-A}"
    printf 'server 127.0.0.1 %s\nzone %s\nupdate delete %s %s\nupdate add %s 5 %s %s\nsend\n' \
        "$BIND_PORT" "$BIND_ZONE" "$name" "$type" "$name" "$type" "$value" |
        nsupdate -t 5 -y "$BIND_ALG:$BIND_KEY:$BIND_SECRET" || fail "nsupdate of $name failed"
}

# bind_dns_yaml RECORD ADDRESS: a `dns:` section for node_config's EXTRA_YAML
bind_dns_yaml() {
    cat <<YML
dns:
  server: 127.0.0.1:$BIND_PORT
  zone: $BIND_ZONE
  record: $1
  address: $2
  ttl: 5
  tsig_key_name: $BIND_KEY
  tsig_secret: "$BIND_SECRET"
  tsig_algorithm: $BIND_ALG
  timeout: 2
YML
}
