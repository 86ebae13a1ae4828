# pgvigil build: one internal library (every src/*/*.c) linked by the binary and the tests.
# Modes: `make` (release, build/), `make asan` (ASan+UBSan, build-asan/), `make check` (unit tests
# under ASan/UBSan, then under valgrind with the plain build), `make fuzz` (libFuzzer targets with
# clang, build-fuzz/fuzz/). New source files need no edit here.

PKGS    := libpq libcurl libmicrohttpd yaml-0.1 jansson libcrypto ldns libzstd liblz4 zlib libxxhash
BUILD   ?= build
CC      ?= cc
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS)) -lpthread
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

WARN    := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter -Wno-format-nonliteral -Wno-format-truncation
CFLAGS_COMMON := -std=c11 -D_GNU_SOURCE -g $(WARN) -Isrc $(PKG_CFLAGS)
ifeq ($(FUZZ),1)
  # libFuzzer (clang): the library is instrumented for coverage, the targets link the driver
  CFLAGS_MODE := -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
                 -fno-sanitize-recover=undefined -Wno-unknown-warning-option
  LDFLAGS_MODE := -fsanitize=fuzzer,address,undefined
else ifeq ($(SAN),1)
  # the test build: sanitizers, and the hooks tests use to reach a window on purpose
  CFLAGS_MODE := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                 -DPGVIGIL_TEST_HOOKS
  LDFLAGS_MODE := -fsanitize=address,undefined
else
  CFLAGS_MODE := -O2
  LDFLAGS_MODE :=
endif
CFLAGS_ALL := $(CFLAGS_COMMON) $(CFLAGS_MODE) $(CFLAGS)

# every .c under src/ at any depth (src/backup/storage/*.c too), but main.c
LIB_SRC  := $(sort $(filter-out src/main.c,$(shell find src -name '*.c')))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
MAIN_OBJ := $(BUILD)/src/main.o
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)

.PHONY: all asan fuzz fuzz-bins check unit unit-asan unit-valgrind integration test clean pgext pgext-install
all: $(BUILD)/pgvigil

asan:
	$(MAKE) BUILD=build-asan SAN=1 all

$(BUILD)/libpgvigil.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/pgvigil: $(MAIN_OBJ) $(BUILD)/libpgvigil.a
	$(CC) $(LDFLAGS_MODE) -o $@ $^ $(PKG_LIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

# the pure code of the server module pgvigil_aa (pgext/aa/pgvigil_aa_X.c, no server headers),
# tested like the library's (tests/unit/test_aa_X.c)
$(BUILD)/tests/test_aa_%: tests/unit/test_aa_%.c pgext/aa/pgvigil_aa_%.c pgext/aa/pgvigil_aa_%.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Ipgext/aa -Itests/unit -o $@ $(filter %.c,$^) $(CMOCKA_LIBS) $(LDFLAGS_MODE)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libpgvigil.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/unit -o $@ $< $(BUILD)/libpgvigil.a $(PKG_LIBS) $(CMOCKA_LIBS) $(LDFLAGS_MODE)

# Server-side modules (pgext/*), built with PostgreSQL's own PGXS against postgresql-server-dev-15
# and installed into the server's library directory (root): the commit guard. with_llvm=no: no
# JIT bitcode (it would need clang and llvm at build time, for nothing a JIT could inline).
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
PGEXT_DIRS := $(sort $(dir $(wildcard pgext/*/Makefile)))
pgext:
	@for d in $(PGEXT_DIRS); do $(MAKE) -s -C $$d PG_CONFIG=$(PG_CONFIG) with_llvm=no || exit 1; done

pgext-install: pgext
	@for d in $(PGEXT_DIRS); do $(MAKE) -s -C $$d PG_CONFIG=$(PG_CONFIG) with_llvm=no install || exit 1; done

# libFuzzer targets (tests/fuzz/fuzz_*.c) in build-fuzz/fuzz/; tests/fuzz/run.sh runs them
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang FUZZ=1 fuzz-bins

fuzz-bins: $(FUZZ_BIN)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/libpgvigil.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/fuzz -o $@ $< $(BUILD)/libpgvigil.a $(PKG_LIBS) $(LDFLAGS_MODE)

unit: $(UNIT_BIN)
	@fail=0; for t in $(UNIT_BIN); do echo "== $$t"; $$t || fail=1; done; exit $$fail

# unit tests under AddressSanitizer + UBSan
unit-asan:
	$(MAKE) BUILD=build-asan SAN=1 unit

# unit tests under valgrind (plain build): any leak or error fails
unit-valgrind: $(UNIT_BIN)
	@fail=0; for t in $(UNIT_BIN); do echo "== valgrind $$t"; \
	  valgrind -q --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
	    --error-exitcode=9 $$t >/dev/null || { echo "valgrind failed: $$t"; fail=1; }; done; exit $$fail

check: unit-asan unit-valgrind

clean:
	rm -rf build build-asan build-*
	@for d in $(PGEXT_DIRS); do $(MAKE) -s -C $$d PG_CONFIG=$(PG_CONFIG) with_llvm=no clean; done

-include $(LIB_OBJ:.o=.d) $(MAIN_OBJ:.o=.d)
