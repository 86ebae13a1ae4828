# Shared helpers of the benchmarks (bench/proxy, bench/failover); source, do not run.

# bench_build ROOT: make sure PGVIGIL_BIN is a usable release binary and export it. When
# PGVIGIL_BIN is unset: ROOT/build/pgvigil, built (incrementally) if missing or older than its
# sources; if that build fails while a binary exists, that binary is used with a warning.
bench_build() {
    local root="$1"
    if [ -n "${PGVIGIL_BIN:-}" ]; then
        [ -x "$PGVIGIL_BIN" ] || { echo "error: PGVIGIL_BIN=$PGVIGIL_BIN is not executable" >&2; return 1; }
        export PGVIGIL_BIN
        return 0
    fi
    PGVIGIL_BIN="$root/build/pgvigil"
    if [ ! -x "$PGVIGIL_BIN" ] || ! make -C "$root" -q all >/dev/null 2>&1; then
        if ! make -C "$root" -s -j2 all; then
            [ -x "$PGVIGIL_BIN" ] || { echo "error: release build failed" >&2; return 1; }
            echo "warning: release build failed; using the existing $PGVIGIL_BIN (older than the sources)" >&2
        fi
    fi
    export PGVIGIL_BIN
}

# bench_freeze DIR: copy PGVIGIL_BIN into DIR and point PGVIGIL_BIN (and BIN, lib.sh's) at the
# copy, so every process of the run uses one binary even if build/ is rebuilt meanwhile.
bench_freeze() {
    local dir="$1" src="$PGVIGIL_BIN"
    cp "$src" "$dir/pgvigil" || return 1
    PGVIGIL_BIN="$dir/pgvigil"
    BIN="$PGVIGIL_BIN"
    export PGVIGIL_BIN
    BENCH_BIN_DESC="$src (sha256 $(sha256sum "$dir/pgvigil" | cut -c1-12), built $(date -r "$src" '+%F %T'))"
}
