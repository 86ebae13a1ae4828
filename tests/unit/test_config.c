/* Unit tests for src/config: YAML loading and its error messages, defaults, the dynamic
 * configuration JSON and its edits, key/value lists and host:port splitting. */
#include "common/common.h"
#include "config/config.h"
#include "pg/pg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/pgvigil-test-config-XXXXXX";
static char node_path[sizeof(tmpdir) + 16];

static int setup_dir(void **state)
{
    if (!mkdtemp(tmpdir))
        return -1;
    str_fmt(node_path, sizeof(node_path), "%s/node.yml", tmpdir);
    return 0;
}

static int remove_dir(void **state)
{
    unlink(node_path);
    return rmdir(tmpdir);
}

static void write_node(const char *text)
{
    FILE *f = fopen(node_path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* Write text as node.yml, load it, remove it. */
static Config *load_text(const char *text, bool client, Err *err)
{
    write_node(text);
    Config *cfg = client ? config_load_client(node_path, err) : config_load(node_path, err);
    unlink(node_path);
    return cfg;
}

/* Loading text must fail with a message containing want (e.g. "node.yml:7: postgresql.data_dir"). */
static void expect_error(const char *text, const char *want)
{
    Err err = {{0}};
    Config *cfg = load_text(text, false, &err);
    if (cfg || !strstr(err.msg, want))
        fail_msg("want error containing '%s', got '%s'", want, cfg ? "(loaded)" : err.msg);
    config_free(cfg);
    assert_null(strchr(err.msg, '\n'));
}

static const char *full_yaml =
    "scope: demo\n"
    "namespace: /pgv\n"
    "name: node1\n"
    "log:\n"
    "  level: DEBUG\n"
    "  dir: /var/log/patroni\n"
    "restapi:\n"
    "  listen: 0.0.0.0:8008\n"
    "  connect_address: 10.0.0.1:8008\n"
    "  authentication:\n"
    "    username: admin\n"
    "    password: s3cret\n"
    "etcd3:\n"
    "  hosts:\n"
    "    - 10.0.0.5:2379\n"
    "    - 10.0.0.6\n"
    "  protocol: https\n"
    "  username: etcduser\n"
    "  password: etcdpass\n"
    "bootstrap:\n"
    "  dcs:\n"
    "    ttl: 30\n"
    "    loop_wait: 10\n"
    "    retry_timeout: 10\n"
    "    maximum_lag_on_failover: 33554432\n"
    "    synchronous_mode: on\n"
    "    synchronous_mode_strict: \"no\"\n"
    "    synchronous_node_count: 2\n"
    "    pause: false\n"
    "    primary_start_timeout: 120\n"
    "    slots: {}\n"
    "    postgresql:\n"
    "      use_pg_rewind: false\n"
    "      use_slots: yes\n"
    "      parameters:\n"
    "        max_connections: 200\n"
    "        wal_level: replica\n"
    "        hot_standby: on\n"
    "  initdb:\n"
    "    - encoding: UTF8\n"
    "    - data-checksums\n"
    "    - locale: en_US.UTF-8\n"
    "postgresql:\n"
    "  listen: 0.0.0.0:5432\n"
    "  connect_address: 10.0.0.1:5432\n"
    "  data_dir: /var/lib/postgresql/15/main\n"
    "  bin_dir: /usr/lib/postgresql/16/bin\n"
    "  run_as: pgowner\n"
    "  unix_socket_directories: /var/run/postgresql\n"
    "  pgpass: /tmp/pgpass0\n"
    "  authentication:\n"
    "    superuser:\n"
    "      username: admin_pg\n"
    "      password: supersecret\n"
    "    replication:\n"
    "      username: repl\n"
    "      password: 12345\n"
    "    rewind:\n"
    "      username: rewind_user\n"
    "      password: rewindpass\n"
    "  parameters:\n"
    "    shared_buffers: 256MB\n"
    "    work_mem: '8MB'\n"
    "    port: 5432\n"
    "  pg_hba:\n"
    "    - host replication repl 10.0.0.0/24 md5\n"
    "    - host all all 0.0.0.0/0 md5\n"
    "  remove_data_directory_on_rewind_failure: true\n"
    "  remove_data_directory_on_diverged_timelines: YES\n"
    "  callbacks:\n"
    "    on_start: /usr/local/bin/cb.sh\n"
    "    on_stop: /usr/local/bin/cb.sh stop\n"
    "    on_role_change: /usr/local/bin/role.sh\n"
    "    on_restart: /bin/true\n"
    "    on_reload: /bin/false\n"
    "tags:\n"
    "  nofailover: false\n"
    "  noloadbalance: true\n"
    "  nosync: off\n"
    "  clonefrom: True\n"
    "  failover_priority: 3\n"
    "watchdog:\n"
    "  mode: off\n";

static void test_full_file(void **state)
{
    Err err = {{0}};
    Config *c = load_text(full_yaml, false, &err);
    if (!c)
        fail_msg("%s", err.msg);
    assert_string_equal(c->path, node_path);
    assert_string_equal(c->scope, "demo");
    assert_string_equal(c->namespace_, "/pgv/");
    assert_string_equal(c->name, "node1");
    assert_string_equal(c->log_level, "DEBUG");

    assert_int_equal(c->n_etcd_hosts, 2);
    assert_string_equal(c->etcd_hosts[0], "10.0.0.5:2379");
    assert_string_equal(c->etcd_hosts[1], "10.0.0.6:2379");
    assert_string_equal(c->etcd_protocol, "https");
    assert_string_equal(c->etcd_username, "etcduser");
    assert_string_equal(c->etcd_password, "etcdpass");

    assert_string_equal(c->restapi_listen, "0.0.0.0:8008");
    assert_string_equal(c->restapi_connect_address, "10.0.0.1:8008");
    assert_string_equal(c->restapi_auth.username, "admin");
    assert_string_equal(c->restapi_auth.password, "s3cret");

    assert_string_equal(c->pg_listen, "0.0.0.0:5432");
    assert_string_equal(c->pg_connect_address, "10.0.0.1:5432");
    assert_string_equal(c->pg_data_dir, "/var/lib/postgresql/15/main");
    assert_string_equal(c->pg_bin_dir, "/usr/lib/postgresql/16/bin");
    assert_string_equal(c->pg_run_as, "pgowner");
    assert_string_equal(c->pg_socket_dir, "/var/run/postgresql");
    assert_string_equal(c->pg_superuser.username, "admin_pg");
    assert_string_equal(c->pg_superuser.password, "supersecret");
    assert_string_equal(c->pg_replication.username, "repl");
    assert_string_equal(c->pg_replication.password, "12345");
    assert_string_equal(c->pg_rewind.username, "rewind_user");
    assert_string_equal(c->pg_rewind.password, "rewindpass");

    assert_int_equal(c->pg_parameters.n, 3);
    assert_string_equal(kvlist_get(&c->pg_parameters, "shared_buffers"), "256MB");
    assert_string_equal(kvlist_get(&c->pg_parameters, "work_mem"), "8MB");
    assert_string_equal(kvlist_get(&c->pg_parameters, "port"), "5432");

    assert_int_equal(c->n_pg_hba, 2);
    assert_string_equal(c->pg_hba[0], "host replication repl 10.0.0.0/24 md5");
    assert_string_equal(c->pg_hba[1], "host all all 0.0.0.0/0 md5");
    assert_true(c->remove_data_directory_on_rewind_failure);
    assert_true(c->remove_data_directory_on_diverged_timelines);
    assert_string_equal(c->cb_on_start, "/usr/local/bin/cb.sh");
    assert_string_equal(c->cb_on_stop, "/usr/local/bin/cb.sh stop");
    assert_string_equal(c->cb_on_role_change, "/usr/local/bin/role.sh");
    assert_string_equal(c->cb_on_restart, "/bin/true");
    assert_string_equal(c->cb_on_reload, "/bin/false");

    assert_false(c->tags.nofailover);
    assert_true(c->tags.noloadbalance);
    assert_false(c->tags.nosync);
    assert_true(c->tags.clonefrom);
    assert_int_equal(c->tags.failover_priority, 3);

    const DynConfig *d = &c->bootstrap_dcs;
    assert_int_equal(d->ttl, 30);
    assert_int_equal(d->loop_wait_ms, 10000);
    assert_int_equal(d->retry_timeout, 10);
    assert_int_equal(d->maximum_lag_on_failover, 33554432);
    assert_true(d->synchronous_mode);
    assert_false(d->synchronous_mode_strict);
    assert_int_equal(d->synchronous_node_count, 2);
    assert_false(d->pause);
    assert_int_equal(d->primary_start_timeout, 120);
    assert_false(d->use_pg_rewind);
    assert_true(d->use_slots);
    assert_int_equal(d->pg_parameters.n, 3);
    assert_string_equal(kvlist_get(&d->pg_parameters, "max_connections"), "200");
    assert_string_equal(kvlist_get(&d->pg_parameters, "wal_level"), "replica");
    assert_string_equal(kvlist_get(&d->pg_parameters, "hot_standby"), "on");

    assert_int_equal(c->initdb_options.n, 3);
    assert_string_equal(kvlist_get(&c->initdb_options, "encoding"), "UTF8");
    assert_string_equal(kvlist_get(&c->initdb_options, "data-checksums"), "");
    assert_string_equal(kvlist_get(&c->initdb_options, "locale"), "en_US.UTF-8");
    assert_string_equal(c->initdb_options.items[1].key, "data-checksums");
    config_free(c);
}

static void test_defaults(void **state)
{
    Err err = {{0}};
    Config *c = load_text("scope: demo\nname: n1\npostgresql:\n  data_dir: /data/pg\n", false, &err);
    if (!c)
        fail_msg("%s", err.msg);
    assert_string_equal(c->namespace_, "/service/");
    assert_string_equal(c->log_level, "info");
    assert_int_equal(c->n_etcd_hosts, 1);
    assert_string_equal(c->etcd_hosts[0], "127.0.0.1:2379");
    assert_null(c->etcd_hosts[1]);
    assert_string_equal(c->etcd_protocol, "http");
    assert_null(c->etcd_username);
    assert_null(c->etcd_password);
    assert_string_equal(c->restapi_listen, "127.0.0.1:8008");
    assert_string_equal(c->restapi_connect_address, "127.0.0.1:8008");
    assert_null(c->restapi_auth.username);
    assert_null(c->restapi_auth.password);
    assert_string_equal(c->pg_listen, "127.0.0.1:5432");
    assert_string_equal(c->pg_connect_address, "127.0.0.1:5432");
    assert_string_equal(c->pg_bin_dir, "/usr/lib/postgresql/15/bin");
    assert_string_equal(c->pg_run_as, "postgres");
    assert_string_equal(c->pg_socket_dir, "/tmp");
    assert_string_equal(c->pg_superuser.username, "postgres");
    assert_null(c->pg_superuser.password);
    assert_string_equal(c->pg_replication.username, "replicator");
    assert_null(c->pg_replication.password);
    assert_string_equal(c->pg_rewind.username, "postgres");
    assert_null(c->pg_rewind.password);
    assert_int_equal(c->pg_parameters.n, 0);
    assert_null(c->pg_hba);
    assert_int_equal(c->n_pg_hba, 0);
    assert_false(c->remove_data_directory_on_rewind_failure);
    assert_false(c->remove_data_directory_on_diverged_timelines);
    assert_null(c->cb_on_start);
    assert_null(c->cb_on_role_change);
    assert_false(c->tags.nofailover);
    assert_false(c->tags.noloadbalance);
    assert_false(c->tags.nosync);
    assert_false(c->tags.clonefrom);
    assert_int_equal(c->tags.failover_priority, 1);
    assert_int_equal(c->bootstrap_dcs.ttl, 5);
    assert_int_equal(c->bootstrap_dcs.loop_wait_ms, 1000);
    assert_int_equal(c->bootstrap_dcs.retry_timeout, 3);
    assert_int_equal(c->bootstrap_dcs.maximum_lag_on_failover, 1048576);
    assert_int_equal(c->bootstrap_dcs.synchronous_node_count, 1);
    assert_int_equal(c->bootstrap_dcs.primary_start_timeout, 300);
    assert_true(c->bootstrap_dcs.use_pg_rewind);
    assert_true(c->bootstrap_dcs.use_slots);
    assert_false(c->bootstrap_dcs.synchronous_mode);
    assert_false(c->bootstrap_dcs.pause);
    assert_int_equal(c->initdb_options.n, 0);
    config_free(c);
}

static void test_variants(void **state)
{
    Err err = {{0}};
    /* Comma-separated hosts, rewind falling back to the superuser, socket dir taken from the
     * server parameters, namespace without slashes, superuser password only. */
    Config *c = load_text("scope: s\n"
                          "namespace: pgv\n"
                          "name: n\n"
                          "etcd3:\n"
                          "  hosts: 'e1:2379, e2:2380,,e3'\n"
                          "  host: ignored:1\n"
                          "restapi:\n"
                          "  listen: '[::1]:8009'\n"
                          "postgresql:\n"
                          "  listen: 'localhost,127.0.0.1:5433'\n"
                          "  data_dir: /d\n"
                          "  authentication:\n"
                          "    superuser:\n"
                          "      password: pw\n"
                          "  parameters:\n"
                          "    unix_socket_directories: ' /run/pg , /tmp'\n"
                          "  pg_hba: []\n"
                          "  callbacks:\n"
                          "tags:\n"
                          "  nofailover: yes\n"
                          "  failover_priority: 0\n"
                          "bootstrap:\n"
                          "  dcs:\n"
                          "    master_start_timeout: 42\n"
                          "  initdb: {encoding: UTF8, data-checksums: ~}\n",
                          false, &err);
    if (!c)
        fail_msg("%s", err.msg);
    assert_string_equal(c->namespace_, "/pgv/");
    assert_int_equal(c->n_etcd_hosts, 3);
    assert_string_equal(c->etcd_hosts[0], "e1:2379");
    assert_string_equal(c->etcd_hosts[1], "e2:2380");
    assert_string_equal(c->etcd_hosts[2], "e3:2379");
    assert_null(c->etcd_hosts[3]);
    assert_string_equal(c->restapi_connect_address, "[::1]:8009");
    assert_string_equal(c->pg_connect_address, "localhost,127.0.0.1:5433");
    assert_string_equal(c->pg_rewind.username, "postgres");
    assert_string_equal(c->pg_rewind.password, "pw");
    assert_string_equal(c->pg_socket_dir, "/run/pg");
    assert_non_null(c->pg_hba);
    assert_int_equal(c->n_pg_hba, 0);
    assert_true(c->tags.nofailover);
    assert_int_equal(c->tags.failover_priority, 0);
    assert_int_equal(c->bootstrap_dcs.primary_start_timeout, 42);
    assert_int_equal(c->initdb_options.n, 2);
    assert_string_equal(kvlist_get(&c->initdb_options, "data-checksums"), "");
    config_free(c);

    /* etcd3.host alone, and booleans in every accepted spelling. */
    c = load_text("scope: s\nname: n\npostgresql: {data_dir: /d, remove_data_directory_on_rewind_failure: On}\n"
                  "etcd3: {host: 'etcd.local'}\n"
                  "tags: {noloadbalance: 'TRUE', nosync: No, clonefrom: 1}\n",
                  false, &err);
    if (!c)
        fail_msg("%s", err.msg);
    assert_int_equal(c->n_etcd_hosts, 1);
    assert_string_equal(c->etcd_hosts[0], "etcd.local:2379");
    assert_true(c->remove_data_directory_on_rewind_failure);
    assert_true(c->tags.noloadbalance);
    assert_false(c->tags.nosync);
    assert_true(c->tags.clonefrom);
    config_free(c);
}

static void test_merge_keys(void **state)
{
    Err err = {{0}};
    Config *c = load_text("common: &common\n"
                          "  max_connections: 100\n"
                          "  work_mem: 4MB\n"
                          "auth: &auth\n"
                          "  superuser: {username: su, password: one}\n"
                          "scope: s\n"
                          "name: n\n"
                          "postgresql:\n"
                          "  data_dir: /d\n"
                          "  authentication:\n"
                          "    <<: *auth\n"
                          "  parameters:\n"
                          "    work_mem: 8MB\n"
                          "    <<: *common\n"
                          "bootstrap:\n"
                          "  dcs:\n"
                          "    <<: [{ttl: 40}, {ttl: 50, loop_wait: 5}]\n"
                          "    postgresql:\n"
                          "      parameters: *common\n",
                          false, &err);
    if (!c)
        fail_msg("%s", err.msg);
    assert_string_equal(c->pg_superuser.username, "su");
    assert_string_equal(c->pg_superuser.password, "one");
    assert_string_equal(kvlist_get(&c->pg_parameters, "max_connections"), "100");
    assert_string_equal(kvlist_get(&c->pg_parameters, "work_mem"), "8MB");
    assert_int_equal(c->bootstrap_dcs.ttl, 40);
    assert_int_equal(c->bootstrap_dcs.loop_wait_ms, 5000);
    assert_int_equal(c->bootstrap_dcs.pg_parameters.n, 2);
    config_free(c);

    /* the fast profile: a one-second lease renewed every half second */
    c = load_text("scope: s\nname: n\npostgresql: {data_dir: /d}\nbootstrap:\n  dcs: {ttl: 1, loop_wait: 0.5}\n", false, &err);
    if (!c)
        fail_msg("%s", err.msg);
    assert_int_equal(c->bootstrap_dcs.ttl, 1);
    assert_int_equal(c->bootstrap_dcs.loop_wait_ms, 500);
    config_free(c);

    /* A mapping that merges itself, and an exponential fan-out, stop with an error. */
    expect_error("scope: s\npostgresql: &p\n  <<: *p\n", "node.yml:3: postgresql.<<: merge keys nested or repeated too much");
    expect_error("a: &a {x: 1}\n"
                 "b: &b {<<: [*a, *a, *a, *a, *a, *a, *a, *a]}\n"
                 "c: &c {<<: [*b, *b, *b, *b, *b, *b, *b, *b]}\n"
                 "d: &d {<<: [*c, *c, *c, *c, *c, *c, *c, *c]}\n"
                 "scope: s\ntags: {<<: [*d, *d, *d, *d, *d, *d, *d, *d]}\n",
                 "merge keys nested or repeated too much");
    expect_error("scope: s\ntags:\n  <<: 5\n", "node.yml:3: tags.<<: expected a mapping or a list of mappings, got \"5\"");
}

/* bootstrap.initdb and data checksums: on unless the list turns them off (Patroni's shapes:
 * strings and single-key maps); initdb gets "--data-checksums" once, never with a value */
static void initdb_args(const char *initdb_yaml, const char *want)
{
    Err err = {{0}};
    char *text = str_printf("scope: s\nname: n\npostgresql: {data_dir: /d}\n%s", initdb_yaml);
    Config *c = load_text(text, false, &err);
    free(text);
    if (!c)
        fail_msg("%s: %s", initdb_yaml, err.msg);
    char out[32][256];
    int n = pg_initdb_options(&c->initdb_options, out, 32);
    char got[1024] = "";
    for (int i = 0; i < n; i++)
        str_fmt(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? " " : "", out[i]);
    if (strcmp(got, want) != 0)
        fail_msg("%s: initdb gets '%s', want '%s'", initdb_yaml, got, want);
    config_free(c);
}

static void test_initdb_checksums(void **state)
{
    (void)state;
    initdb_args("", "--data-checksums");
    initdb_args("bootstrap:\n  initdb: [{encoding: UTF8}]\n", "--encoding=UTF8 --data-checksums");
    initdb_args("bootstrap:\n  initdb: [data-checksums, {encoding: UTF8}]\n", "--encoding=UTF8 --data-checksums");
    initdb_args("bootstrap:\n  initdb: [{data-checksums: true}]\n", "--data-checksums");
    initdb_args("bootstrap:\n  initdb: {data-checksums: ~, locale: C}\n", "--locale=C --data-checksums");
    initdb_args("bootstrap:\n  initdb: [{data-checksums: false}, {encoding: UTF8}]\n", "--encoding=UTF8");
    initdb_args("bootstrap:\n  initdb: [{data-checksums: off}]\n", "");
    initdb_args("bootstrap:\n  initdb: [no-data-checksums, {locale: C}]\n", "--locale=C");
    initdb_args("bootstrap:\n  initdb:\n    - {data-checksums: no}\n    - no-data-checksums\n", "");
    expect_error("scope: s\nbootstrap:\n  initdb: [{data-checksums: maybe}]\n",
                 "node.yml:3: bootstrap.initdb: data-checksums: expected a boolean (true/false), got \"maybe\"");
    expect_error("scope: s\nbootstrap:\n  initdb: [data-checksums, no-data-checksums]\n",
                 "node.yml:3: bootstrap.initdb: data-checksums and no-data-checksums: choose one");
}

static void test_client(void **state)
{
    Err err = {{0}};
    Config *c = load_text("scope: demo\n", true, &err);
    if (!c)
        fail_msg("%s", err.msg);
    assert_string_equal(c->scope, "demo");
    assert_null(c->name);
    assert_null(c->pg_data_dir);
    assert_int_equal(c->n_etcd_hosts, 1);
    assert_string_equal(c->etcd_hosts[0], "127.0.0.1:2379");
    assert_string_equal(c->namespace_, "/service/");
    config_free(c);

    /* The client still needs a scope. */
    c = load_text("name: n1\n", true, &err);
    assert_null(c);
    assert_non_null(strstr(err.msg, "node.yml: missing required key: scope"));
}

static void test_missing_and_empty(void **state)
{
    Err err = {{0}};
    char path[sizeof(tmpdir) + 32];
    str_fmt(path, sizeof(path), "%s/absent.yml", tmpdir);
    assert_null(config_load(path, &err));
    char want[sizeof(path) + 64];
    str_fmt(want, sizeof(want), "cannot open %s: No such file or directory", path);
    assert_string_equal(err.msg, want);

    assert_null(config_load(tmpdir, &err));   /* a directory */
    assert_non_null(strstr(err.msg, "Is a directory"));

    config_free(NULL);
    expect_error("", "node.yml: the file is empty");
    expect_error("# only a comment\n\n", "node.yml: the file is empty");
    expect_error("- a\n- b\n", "node.yml:1: (top level): expected a mapping of settings, got a list");
}

static void test_syntax_error(void **state)
{
    expect_error("scope: demo\nname: n1\npostgresql:\n  data_dir: /x: y\n",
                 "node.yml:4:15: YAML syntax error: mapping values are not allowed in this context");
    expect_error("scope: [demo\n", "node.yml:2:1: YAML syntax error:");
    expect_error("scope: \"\xff\xfe\"\n", "node.yml: YAML syntax error: invalid leading UTF-8 octet at byte 8");
    expect_error("scope: *nothing\n", "node.yml:1:8: YAML syntax error: found undefined alias");
}

static void test_type_errors(void **state)
{
    /* a value spanning lines (found by fuzz_config_yaml) is quoted on one line */
    expect_error("scope: demo\netcd3:\n  hosts:\n    s:.\n\n    - 127.0.\n",
                 "node.yml:3: etcd3.hosts: invalid port in \"s:. - 127.0.\" (expected 1..65535)");
    expect_error("scope: demo\nname: n1\nrestapi:\n  listen: 127.0.0.1:8008\n\npostgresql:\n  data_dir:\n"
                 "    a: b\n",
                 "node.yml:7: postgresql.data_dir: expected a string, got a mapping");
    expect_error("scope: demo\nbootstrap:\n  dcs:\n    ttl: abc\n",
                 "node.yml:4: bootstrap.dcs.ttl: expected an integer, got \"abc\"");
    expect_error("scope: demo\nbootstrap:\n  dcs:\n    maximum_lag_on_failover: 1.5\n",
                 "node.yml:4: bootstrap.dcs.maximum_lag_on_failover: expected an integer, got \"1.5\"");
    expect_error("scope: demo\nbootstrap:\n  dcs:\n    ttl: 99999999999\n",
                 "node.yml:4: bootstrap.dcs.ttl: integer out of range");
    expect_error("scope: [a, b]\n", "node.yml:1: scope: expected a string, got a list");
    expect_error("scope: s\ntags:\n  nofailover: maybe\n",
                 "node.yml:3: tags.nofailover: expected a boolean (true/false, yes/no, on/off), got \"maybe\"");
    expect_error("scope: s\npostgresql: on\n", "node.yml:2: postgresql: expected a mapping, got \"on\"");
    expect_error("scope: s\npostgresql:\n  pg_hba:\n    - host all all 0/0 md5\n    - {a: b}\n",
                 "node.yml:5: postgresql.pg_hba[1]: expected a string, got a mapping");
    expect_error("scope: s\npostgresql:\n  pg_hba: 'host all all 0/0 md5'\n",
                 "node.yml:3: postgresql.pg_hba: expected a list of strings, got \"host all all 0/0 md5\"");
    expect_error("scope: s\npostgresql:\n  parameters:\n    work_mem: [1]\n",
                 "node.yml:4: postgresql.parameters.work_mem: expected a scalar, got a list");
    expect_error("scope: s\nbootstrap:\n  initdb:\n    - data-checksums\n    - [x]\n",
                 "node.yml:5: bootstrap.initdb[1]: expected a string or a mapping, got a list");
    expect_error("scope: s\netcd3:\n  hosts:\n    - e1:2379\n    - {h: 1}\n",
                 "node.yml:5: etcd3.hosts[1]: expected a string, got a mapping");
    expect_error("scope: s\nlog: {level: loud}\n",
                 "node.yml:2: log.level: expected debug, info, warning or error, got \"loud\"");
    expect_error("scope: s\netcd3: {protocol: ftp}\n",
                 "node.yml:2: etcd3.protocol: expected http or https, got \"ftp\"");
    expect_error("scope: s\ntags: {failover_priority: -1}\n",
                 "node.yml:2: tags.failover_priority: must not be negative, got -1");
    /* A long scalar is cut short and stays on one line. */
    expect_error("scope: s\ntags:\n  nosync: \"line one\\nline two and a great deal more text after it\"\n",
                 "node.yml:3: tags.nosync: expected a boolean (true/false, yes/no, on/off), got \"line one line two");
}

static void test_required(void **state)
{
    expect_error("name: n1\npostgresql:\n  data_dir: /d\n", "node.yml: missing required key: scope");
    expect_error("scope: demo\npostgresql:\n  data_dir: /d\n", "node.yml: missing required key: name");
    expect_error("scope: demo\nname: n1\n", "node.yml: missing required key: postgresql.data_dir");
    expect_error("scope: demo\nname: n1\npostgresql:\n  data_dir:\n",
                 "node.yml: missing required key: postgresql.data_dir");
    expect_error("scope: ''\nname: n1\npostgresql:\n  data_dir: /d\n", "node.yml:1: scope: must not be empty");
    expect_error("scope: demo\nname: n1\npostgresql:\n  data_dir: data/pg\n",
                 "node.yml:4: postgresql.data_dir: must be an absolute path, got \"data/pg\"");
}

static void test_addresses(void **state)
{
    expect_error("scope: demo\nrestapi:\n  listen: 127.0.0.1:99999\n",
                 "node.yml:3: restapi.listen: invalid port in \"127.0.0.1:99999\" (expected 1..65535)");
    expect_error("scope: demo\npostgresql:\n  listen: 127.0.0.1:0\n",
                 "node.yml:3: postgresql.listen: invalid port in \"127.0.0.1:0\"");
    expect_error("scope: demo\npostgresql:\n  connect_address: db1\n",
                 "node.yml:3: postgresql.connect_address: invalid address \"db1\": expected host:port");
    expect_error("scope: demo\netcd3:\n  hosts: e1:2379,e2:70000\n",
                 "node.yml:3: etcd3.hosts: invalid port in \"e2:70000\"");
    expect_error("scope: demo\netcd3:\n  hosts: ' , '\n", "node.yml:3: etcd3.hosts: must name at least one host");
    expect_error("scope: demo\netcd3:\n  host: http://e1:2379\n", "node.yml:3: etcd3.host: expected host:port, got the URL");
}

static void test_dcs_ranges(void **state)
{
    expect_error("scope: demo\nname: n\npostgresql: {data_dir: /d}\nbootstrap:\n  dcs:\n    ttl: 10\n"
                 "    loop_wait: 10\n",
                 "node.yml:7: bootstrap.dcs.loop_wait: must be less than ttl (10), got 10");
    expect_error("scope: demo\nbootstrap:\n  dcs:\n    loop_wait: 30\n    ttl: 20\n",
                 "node.yml:4: bootstrap.dcs.loop_wait: must be less than ttl (20), got 30");
    expect_error("scope: demo\nbootstrap:\n  dcs:\n    ttl: 0\n", "node.yml:4: bootstrap.dcs.ttl: must be at least 1, got 0");
    expect_error("scope: demo\nbootstrap:\n  dcs:\n    loop_wait: 0\n",
                 "node.yml:4: bootstrap.dcs.loop_wait: must be at least 0.1, got 0");
    expect_error("scope: demo\nbootstrap:\n  dcs:\n    loop_wait: 0.05\n",
                 "node.yml:4: bootstrap.dcs.loop_wait: must be at least 0.1, got 0.05");
    expect_error("scope: demo\nbootstrap:\n  dcs:\n    ttl: 1\n",
                 "node.yml:4: bootstrap.dcs.loop_wait: must be less than ttl (1), got 1");
    expect_error("scope: demo\nbootstrap:\n  dcs:\n    loop_wait: -1\n",
                 "node.yml:4: bootstrap.dcs.loop_wait: expected a number of seconds, got \"-1\"");
    expect_error("scope: demo\nbootstrap:\n  dcs:\n    loop_wait: 1s\n",
                 "node.yml:4: bootstrap.dcs.loop_wait: expected a number of seconds, got \"1s\"");
    expect_error("scope: demo\nbootstrap:\n  dcs:\n    synchronous_node_count: 0\n",
                 "node.yml:4: bootstrap.dcs.synchronous_node_count: must be at least 1");
}

static void test_dynconfig_defaults_json(void **state)
{
    DynConfig d;
    dynconfig_defaults(&d);
    char *js = dynconfig_to_json(&d);
    assert_string_equal(js, "{\"loop_wait\":1,\"maximum_lag_on_failover\":1048576,\"pause\":false,"
                            "\"postgresql\":{\"parameters\":{},\"use_pg_rewind\":true,\"use_slots\":true},"
                            "\"primary_start_timeout\":300,\"retry_timeout\":3,\"synchronous_mode\":false,"
                            "\"synchronous_mode_strict\":false,\"synchronous_node_count\":1,\"ttl\":5}");
    free(js);
    dynconfig_free(&d);

    Err err = {{0}};
    assert_true(dynconfig_from_json(NULL, &d, &err));
    assert_int_equal(d.ttl, 5);
    assert_true(dynconfig_from_json("  ", &d, &err));
    assert_int_equal(d.loop_wait_ms, 1000);
    assert_true(dynconfig_from_json("{}", &d, &err));
    assert_int_equal(d.primary_start_timeout, 300);
    assert_int_equal(d.pg_parameters.n, 0);
}

static void test_dynconfig_round_trip(void **state)
{
    const char *in = "{\"ttl\":30,\"loop_wait\":10,\"retry_timeout\":10,\"maximum_lag_on_failover\":5000000000,"
                     "\"synchronous_mode\":true,\"synchronous_mode_strict\":\"on\",\"synchronous_node_count\":2,"
                     "\"pause\":true,\"master_start_timeout\":99,\"check_timeline\":true,\"slots\":{\"x\":{}},"
                     "\"postgresql\":{\"use_pg_rewind\":false,\"use_slots\":false,\"pg_hba\":[\"x\"],"
                     "\"parameters\":{\"max_connections\":100,\"wal_level\":\"logical\",\"hot_standby\":true,"
                     "\"fsync\":false,\"checkpoint_completion_target\":0.9,\"track_io_timing\":null,"
                     "\"work_mem\":\"8MB\",\"port\":\"05432\"}}}";
    DynConfig d;
    Err err = {{0}};
    if (!dynconfig_from_json(in, &d, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(d.ttl, 30);
    assert_int_equal(d.loop_wait_ms, 10000);
    assert_int_equal(d.retry_timeout, 10);
    assert_true(d.maximum_lag_on_failover == 5000000000LL);
    assert_true(d.synchronous_mode);
    assert_true(d.synchronous_mode_strict);
    assert_int_equal(d.synchronous_node_count, 2);
    assert_true(d.pause);
    assert_int_equal(d.primary_start_timeout, 99);
    assert_false(d.use_pg_rewind);
    assert_false(d.use_slots);
    assert_int_equal(d.pg_parameters.n, 7);
    assert_string_equal(kvlist_get(&d.pg_parameters, "max_connections"), "100");
    assert_string_equal(kvlist_get(&d.pg_parameters, "hot_standby"), "on");
    assert_string_equal(kvlist_get(&d.pg_parameters, "fsync"), "off");
    assert_string_equal(kvlist_get(&d.pg_parameters, "checkpoint_completion_target"), "0.9");
    assert_null(kvlist_get(&d.pg_parameters, "track_io_timing"));

    char *out = dynconfig_to_json(&d);
    assert_string_equal(out, "{\"loop_wait\":10,\"maximum_lag_on_failover\":5000000000,\"pause\":true,"
                             "\"postgresql\":{\"parameters\":{\"checkpoint_completion_target\":\"0.9\","
                             "\"fsync\":\"off\",\"hot_standby\":\"on\",\"max_connections\":100,"
                             "\"port\":\"05432\",\"wal_level\":\"logical\",\"work_mem\":\"8MB\"},"
                             "\"use_pg_rewind\":false,\"use_slots\":false},\"primary_start_timeout\":99,"
                             "\"retry_timeout\":10,\"slots\":{\"x\":{\"type\":\"physical\"}},"
                             "\"synchronous_mode\":true,\"synchronous_mode_strict\":true,"
                             "\"synchronous_node_count\":2,\"ttl\":30}");

    /* Reading our own output gives the same settings back. */
    DynConfig again;
    assert_true(dynconfig_from_json(out, &again, &err));
    char *out2 = dynconfig_to_json(&again);
    assert_string_equal(out, out2);

    /* A deep copy survives freeing the original. */
    DynConfig copy;
    dynconfig_copy(&copy, &again);
    dynconfig_free(&again);
    char *out3 = dynconfig_to_json(&copy);
    assert_string_equal(out, out3);
    dynconfig_free(&copy);
    dynconfig_free(&d);
    free(out);
    free(out2);
    free(out3);
}

static void expect_json_error(const char *json, const char *want)
{
    DynConfig d;
    Err err = {{0}};
    if (dynconfig_from_json(json, &d, &err) || !strstr(err.msg, want))
        fail_msg("want error containing '%s', got '%s'", want, err.msg);
    /* On failure the output holds the defaults, nothing allocated. */
    assert_int_equal(d.ttl, 5);
    assert_int_equal(d.pg_parameters.n, 0);
    dynconfig_free(&d);
}

static void test_dynconfig_json_errors(void **state)
{
    expect_json_error("{\"ttl\":\"abc\"}", "ttl: expected an integer, got \"abc\"");
    expect_json_error("{\"ttl\":[1]}", "ttl: expected an integer, got an array");
    expect_json_error("{\"pause\":\"maybe\"}", "pause: expected a boolean, got \"maybe\"");
    expect_json_error("{\"postgresql\":[]}", "postgresql: expected an object, got an array");
    expect_json_error("{\"postgresql\":{\"use_slots\":7}}", "postgresql.use_slots: expected a boolean, got 7");
    expect_json_error("{\"postgresql\":{\"parameters\":{\"a\":1,\"work_mem\":{}}}}",
                      "postgresql.parameters.work_mem: expected a scalar, got an object");
    expect_json_error("{\"ttl\":10,\"loop_wait\":10}", "loop_wait: must be less than ttl (10), got 10");
    expect_json_error("{\"ttl\":1e12}", "ttl: integer out of range");
    expect_json_error("[1]", "config: expected a JSON object");
    expect_json_error("{\"ttl\":", "config: invalid JSON at line 1");

    /* Strings holding numbers and integral reals are accepted. */
    DynConfig d;
    Err err = {{0}};
    assert_true(dynconfig_from_json("{\"ttl\":\"20\",\"loop_wait\":5.0}", &d, &err));
    assert_int_equal(d.ttl, 20);
    assert_int_equal(d.loop_wait_ms, 5000);
    dynconfig_free(&d);

    /* loop_wait in fractions of a second (the fast profile), written back as a real; whole
     * seconds stay integers */
    assert_true(dynconfig_from_json("{\"ttl\":1,\"loop_wait\":0.5}", &d, &err));
    assert_int_equal(d.ttl, 1);
    assert_int_equal(d.loop_wait_ms, 500);
    assert_null(dynconfig_check(&d, &err));
    char *js = dynconfig_to_json(&d);
    assert_non_null(strstr(js, "\"loop_wait\":0.5"));
    free(js);
    dynconfig_free(&d);
    assert_true(dynconfig_from_json("{\"loop_wait\":\"0.25\"}", &d, &err));
    assert_int_equal(d.loop_wait_ms, 250);
    dynconfig_free(&d);
    expect_json_error("{\"loop_wait\":\"fast\"}", "loop_wait: expected a number of seconds, got \"fast\"");
    expect_json_error("{\"loop_wait\":-2}", "loop_wait: out of range");
    expect_json_error("{\"ttl\":1,\"loop_wait\":1}", "loop_wait: must be less than ttl (1), got 1");
}

/* standby_cluster and permanent slots: Patroni's shapes, checked like the rest */
static void test_dynconfig_standby_cluster(void **state)
{
    DynConfig d;
    Err err = {{0}};
    const char *in = "{\"standby_cluster\":{\"host\":\"10.1.0.3,10.1.0.4\",\"port\":\"5433\",\"primary_slot_name\":"
                     "\"site_b\",\"recovery_min_apply_delay\":\"1h\",\"create_replica_methods\":[\"pgvigil\","
                     "\"basebackup\"],\"archive_cleanup_command\":\"x\"},\"slots\":{\"site_a\":{\"type\":\"physical\"}}}";
    if (!dynconfig_from_json(in, &d, &err))
        fail_msg("%s", err.msg);
    assert_true(d.standby.present);
    assert_string_equal(d.standby.host, "10.1.0.3,10.1.0.4");
    assert_int_equal(d.standby.port, 5433);
    assert_string_equal(d.standby.primary_slot_name, "site_b");
    assert_null(d.standby.restore_command);
    assert_string_equal(d.standby.recovery_min_apply_delay, "1h");
    assert_int_equal(d.standby.n_create_replica_methods, 2);
    assert_string_equal(d.standby.create_replica_methods[0], "pgvigil");
    assert_int_equal(d.n_slots, 1);
    assert_string_equal(d.slots[0], "site_a");
    char *out = dynconfig_to_json(&d);
    assert_non_null(strstr(out, "\"standby_cluster\":{\"create_replica_methods\":[\"pgvigil\",\"basebackup\"],"
                                "\"host\":\"10.1.0.3,10.1.0.4\",\"port\":5433,\"primary_slot_name\":\"site_b\","
                                "\"recovery_min_apply_delay\":\"1h\"}"));
    assert_non_null(strstr(out, "\"slots\":{\"site_a\":{\"type\":\"physical\"}}"));
    DynConfig copy;
    dynconfig_copy(&copy, &d);
    dynconfig_free(&d);
    char *out2 = dynconfig_to_json(&copy);
    assert_string_equal(out, out2);
    free(out);
    free(out2);
    dynconfig_free(&copy);

    /* archive only: a restore_command and no host; port defaults to 5432; null means absent */
    assert_true(dynconfig_from_json("{\"standby_cluster\":{\"restore_command\":\"cp /a/%f %p\"}}", &d, &err));
    assert_true(d.standby.present && !d.standby.host && d.standby.port == 5432);
    dynconfig_free(&d);
    assert_true(dynconfig_from_json("{\"standby_cluster\":null}", &d, &err));
    assert_false(d.standby.present);
    out = dynconfig_to_json(&d);
    assert_null(strstr(out, "standby_cluster"));
    free(out);
    dynconfig_free(&d);

    expect_json_error("{\"standby_cluster\":{}}", "standby_cluster: needs a host to replicate from, or a restore_command");
    expect_json_error("{\"standby_cluster\":\"10.1.0.3\"}", "standby_cluster: expected an object");
    expect_json_error("{\"standby_cluster\":{\"host\":\"a\",\"port\":70000}}", "standby_cluster.port: expected a port number");
    expect_json_error("{\"standby_cluster\":{\"host\":\"a\",\"port\":\"x\"}}", "standby_cluster.port");
    expect_json_error("{\"standby_cluster\":{\"host\":7}}", "standby_cluster.host: expected a string");
    expect_json_error("{\"standby_cluster\":{\"host\":\"a b\"}}", "standby_cluster.host: \"a b\" is not a host name");
    expect_json_error("{\"standby_cluster\":{\"host\":\"a\",\"primary_slot_name\":\"Site-B\"}}",
                      "standby_cluster.primary_slot_name: \"Site-B\" is not a replication slot name");
    char longhost[300];
    memset(longhost, 'h', 280);
    longhost[280] = '\0';
    char text[400];
    str_fmt(text, sizeof(text), "{\"standby_cluster\":{\"host\":\"%s\"}}", longhost);
    expect_json_error(text, "standby_cluster.host: longer than 255 characters");
    /* other tools' methods and logical slots (Patroni files carry them) are skipped, not errors */
    assert_true(dynconfig_from_json("{\"standby_cluster\":{\"host\":\"a\",\"create_replica_methods\":[\"wal_e\","
                                    "\"basebackup\"]},\"slots\":{\"cdc\":{\"type\":\"logical\",\"plugin\":"
                                    "\"pgoutput\"},\"site_b\":{\"type\":\"physical\"}}}",
                                    &d, &err));
    assert_int_equal(d.standby.n_create_replica_methods, 1);
    assert_string_equal(d.standby.create_replica_methods[0], "basebackup");
    assert_int_equal(d.n_slots, 1);
    assert_string_equal(d.slots[0], "site_b");
    dynconfig_free(&d);
    /* a config key that does not parse still keeps its standby_cluster: never a promotion */
    StandbyCluster sc;
    memset(&sc, 0, sizeof(sc));
    dynconfig_salvage_standby("{\"ttl\":\"x\",\"standby_cluster\":{\"host\":\"10.1.0.3\",\"port\":\"bad\"}}", &sc);
    assert_true(sc.present);
    DynConfig holder;
    memset(&holder, 0, sizeof(holder));
    holder.standby = sc;
    dynconfig_free(&holder);
    memset(&sc, 0, sizeof(sc));
    dynconfig_salvage_standby("{\"ttl\":\"x\"}", &sc);
    assert_false(sc.present);
    expect_json_error("{\"slots\":{\"Bad\":{}}}", "slots.Bad: not a replication slot name");
    /* pgvigil's own site keys: read, and written back only when set */
    assert_true(dynconfig_from_json("{\"site_lag_guard_bytes\":1048576,\"site_start_without_peer\":true}", &d, &err));
    assert_true(d.site_lag_guard_bytes == 1048576 && d.site_start_without_peer);
    out = dynconfig_to_json(&d);
    assert_non_null(strstr(out, "\"site_lag_guard_bytes\":1048576"));
    assert_non_null(strstr(out, "\"site_start_without_peer\":true"));
    free(out);
    dynconfig_free(&d);
    dynconfig_defaults(&d);
    out = dynconfig_to_json(&d);
    assert_null(strstr(out, "site_"));
    free(out);
    expect_json_error("{\"site_lag_guard_bytes\":-1}", "site_lag_guard_bytes: must not be negative");
    expect_json_error("{\"slots\":[\"x\"]}", "slots: expected an object of slot names");
}

/* bootstrap.dcs.standby_cluster in the YAML: a DR site's first member copies its source */
static void test_yaml_standby_cluster(void **state)
{
    const char *base = "scope: b\nname: n3\npostgresql:\n  data_dir: /tmp/x\nbootstrap:\n  dcs:\n    standby_cluster:\n";
    char text[1024];
    str_fmt(text, sizeof(text), "%s      host: 10.1.0.3\n      port: 5433\n      primary_slot_name: site_b\n"
                                "      create_replica_methods:\n        - basebackup\n", base);
    Err err = {{0}};
    Config *cfg = load_text(text, false, &err);
    if (!cfg)
        fail_msg("%s", err.msg);
    const StandbyCluster *sc = &cfg->bootstrap_dcs.standby;
    assert_true(sc->present);
    assert_string_equal(sc->host, "10.1.0.3");
    assert_int_equal(sc->port, 5433);
    assert_string_equal(sc->primary_slot_name, "site_b");
    assert_int_equal(sc->n_create_replica_methods, 1);
    char *js = dynconfig_to_json(&cfg->bootstrap_dcs);
    assert_non_null(strstr(js, "\"standby_cluster\":{\"create_replica_methods\":[\"basebackup\"],\"host\":\"10.1.0.3\""));
    free(js);
    config_free(cfg);
    str_fmt(text, sizeof(text), "%s      port: 5433\n", base);
    expect_error(text, "node.yml:7: bootstrap.dcs.standby_cluster: standby_cluster: needs a host");
    str_fmt(text, sizeof(text), "%s      host: 10.1.0.3\n      primary_slot_name: Site-B\n", base);
    expect_error(text, "node.yml:7: bootstrap.dcs.standby_cluster: standby_cluster.primary_slot_name");
}

static void expect_set(const char *json, const char *assignment, const char *want)
{
    Err err = {{0}};
    char *out = dynconfig_json_set(json, assignment, &err);
    if (!out)
        fail_msg("%s: %s", assignment, err.msg);
    assert_string_equal(out, want);
    free(out);
}

static void expect_set_error(const char *json, const char *assignment, const char *want)
{
    Err err = {{0}};
    char *out = dynconfig_json_set(json, assignment, &err);
    if (out || !strstr(err.msg, want))
        fail_msg("%s: want error containing '%s', got '%s'", assignment, want, out ? out : err.msg);
}

static void test_json_set(void **state)
{
    expect_set("{\"ttl\":10,\"loop_wait\":1}", "ttl=20", "{\"loop_wait\":1,\"ttl\":20}");
    expect_set("{}", "synchronous_mode=true", "{\"synchronous_mode\":true}");
    expect_set("{\"pause\":true}", "pause=false", "{\"pause\":false}");
    expect_set(NULL, "maximum_lag_on_failover=1.5", "{\"maximum_lag_on_failover\":1.5}");
    expect_set("{\"ttl\":10}", "postgresql.parameters.work_mem=8MB",
               "{\"postgresql\":{\"parameters\":{\"work_mem\":\"8MB\"}},\"ttl\":10}");
    expect_set("{}", "postgresql.parameters.pg_stat_statements.track=all",
               "{\"postgresql\":{\"parameters\":{\"pg_stat_statements.track\":\"all\"}}}");
    expect_set("{\"postgresql\":{\"parameters\":{\"a\":1,\"b\":2},\"use_slots\":true}}", "postgresql.parameters.a=null",
               "{\"postgresql\":{\"parameters\":{\"b\":2},\"use_slots\":true}}");
    expect_set("{\"ttl\":10}", "x.y=null", "{\"ttl\":10}");
    expect_set("{\"ttl\":10}", "ttl=", "{\"ttl\":\"\"}");
    expect_set("{}", "name=a=b", "{\"name\":\"a=b\"}");
    expect_set("{}", "x={\"a\":1}", "{\"x\":\"{\\\"a\\\":1}\"}");

    expect_set_error("{}", "ttl", "invalid assignment \"ttl\": expected key=value");
    expect_set_error("{}", "=5", "invalid assignment");
    expect_set_error("{}", "a..b=1", "invalid key \"a..b\"");
    expect_set_error("{}", "a.=1", "invalid key \"a.\"");
    expect_set_error("{\"ttl\":10}", "ttl.x=1", "cannot set ttl.x: ttl is not an object");
    expect_set_error("{bad", "ttl=1", "config: invalid JSON");
    expect_set_error("[]", "ttl=1", "config: expected a JSON object");
}

static void expect_merge(const char *json, const char *patch, const char *want)
{
    Err err = {{0}};
    char *out = dynconfig_json_merge(json, patch, &err);
    if (!out)
        fail_msg("%s", err.msg);
    assert_string_equal(out, want);
    free(out);
}

static void test_json_merge(void **state)
{
    expect_merge("{\"ttl\":10,\"loop_wait\":1}", "{\"ttl\":30}", "{\"loop_wait\":1,\"ttl\":30}");
    expect_merge("{\"ttl\":10,\"pause\":true}", "{\"pause\":null}", "{\"ttl\":10}");
    expect_merge("{\"postgresql\":{\"parameters\":{\"a\":\"1\",\"b\":\"2\"},\"use_slots\":true}}",
                 "{\"postgresql\":{\"parameters\":{\"a\":null,\"c\":\"3\"}}}",
                 "{\"postgresql\":{\"parameters\":{\"b\":\"2\",\"c\":\"3\"},\"use_slots\":true}}");
    /* RFC 7386 appendix A cases. */
    expect_merge("{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}");
    expect_merge("{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}");
    expect_merge("{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}");
    expect_merge("{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}");
    expect_merge("{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}");
    expect_merge("{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}");
    expect_merge("{\"e\":null}", "{\"a\":1}", "{\"a\":1,\"e\":null}");
    expect_merge("{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}");
    expect_merge(NULL, "{\"ttl\":20}", "{\"ttl\":20}");

    Err err = {{0}};
    assert_null(dynconfig_json_merge("{}", "[1]", &err));
    assert_non_null(strstr(err.msg, "patch: expected a JSON object"));
    assert_null(dynconfig_json_merge("{}", "{", &err));
    assert_non_null(strstr(err.msg, "patch: invalid JSON"));
    assert_null(dynconfig_json_merge("nope", "{}", &err));
    assert_non_null(strstr(err.msg, "config: invalid JSON"));
    assert_null(dynconfig_json_merge("{}", NULL, &err));
}

static void test_kvlist(void **state)
{
    KvList l = {0};
    assert_null(kvlist_get(&l, "a"));
    kvlist_set(&l, "a", "1");
    kvlist_set(&l, "b", "2");
    kvlist_set(&l, "a", "3");
    kvlist_set(&l, "c", NULL);
    assert_int_equal(l.n, 3);
    assert_string_equal(kvlist_get(&l, "a"), "3");
    assert_string_equal(kvlist_get(&l, "b"), "2");
    assert_string_equal(kvlist_get(&l, "c"), "");
    assert_string_equal(l.items[0].key, "a");
    assert_null(kvlist_get(NULL, "a"));
    kvlist_free(&l);
    assert_int_equal(l.n, 0);
    assert_null(l.items);
    kvlist_free(&l);
}

static void test_split_hostport(void **state)
{
    char *host;
    int port;
    Err err = {{0}};
    assert_true(config_split_hostport("127.0.0.1:5432", &host, &port, &err));
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 5432);
    free(host);
    assert_true(config_split_hostport("[::1]:8008", &host, &port, &err));
    assert_string_equal(host, "::1");
    assert_int_equal(port, 8008);
    free(host);
    assert_true(config_split_hostport("a,b:65535", &host, &port, &err));
    assert_string_equal(host, "a,b");
    assert_int_equal(port, 65535);
    free(host);
    assert_true(config_split_hostport("h:1", NULL, NULL, &err));

    const char *bad[] = {"", "host", ":5432", "h:", "h:0", "h:65536", "h:12a", "h:-1", "[::1]", "[::1:5", "h:000001"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        host = (char *)"untouched";
        if (config_split_hostport(bad[i], &host, &port, &err))
            fail_msg("accepted '%s'", bad[i]);
        assert_null(host);
    }
    assert_false(config_split_hostport(NULL, NULL, NULL, NULL));
}

static void test_parse_scalars(void **state)
{
    bool b = false;
    const char *yes[] = {"true", "TRUE", "Yes", "on", "ON", "1"};
    const char *no[] = {"false", "False", "no", "NO", "off", "0"};
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        assert_true(config_parse_bool(yes[i], &b));
        assert_true(b);
        assert_true(config_parse_bool(no[i], &b));
        assert_false(b);
    }
    assert_false(config_parse_bool("y", &b));
    assert_false(config_parse_bool("", &b));
    assert_false(config_parse_bool(NULL, &b));

    int64_t v;
    assert_true(config_parse_int64("-42", &v));
    assert_int_equal(v, -42);
    assert_true(config_parse_int64("+7", &v));
    assert_int_equal(v, 7);
    assert_false(config_parse_int64(" 1", &v));
    assert_false(config_parse_int64("1 ", &v));
    assert_false(config_parse_int64("0x10", &v));
    assert_false(config_parse_int64("-", &v));
    assert_false(config_parse_int64("99999999999999999999", &v));
}

static Config *load_proxy_text(const char *text, Err *err)
{
    write_node(text);
    Config *cfg = config_load_proxy(node_path, err);
    unlink(node_path);
    return cfg;
}

static void expect_proxy_error(const char *text, const char *want)
{
    Err err = {{0}};
    Config *cfg = load_proxy_text(text, &err);
    if (cfg || !strstr(err.msg, want))
        fail_msg("want error containing '%s', got '%s'", want, cfg ? "(loaded)" : err.msg);
    config_free(cfg);
    assert_null(strchr(err.msg, '\n'));
}

static void test_proxy_config(void **state)
{
    (void)state;
    Err err = {{0}};
    Config *c = load_proxy_text("scope: demo\n"
                                "etcd3: {hosts: 127.0.0.1:2379}\n"
                                "proxy:\n"
                                "  admin_listen: 127.0.0.1:5010\n"
                                "  connect_wait: 0\n"
                                "  routes:\n"
                                "    - {listen: 127.0.0.1:5000, role: primary}\n"
                                "    - {name: reads, listen: 127.0.0.1:5001, role: replica, fallback_primary: no}\n"
                                "    - {name: odoo, listen: '*:8069', role: primary, protocol: tcp, target_port: 8069}\n",
                                &err);
    assert_non_null(c);
    const ProxyConfig *pc = &c->proxy;
    assert_int_equal(pc->n_routes, 3);
    assert_string_equal(pc->routes[0].name, "primary-5000");
    assert_int_equal(pc->routes[0].role, ROUTE_PRIMARY);
    assert_true(pc->routes[0].postgres);
    assert_true(pc->routes[0].fallback_primary);
    assert_string_equal(pc->routes[1].name, "reads");
    assert_int_equal(pc->routes[1].role, ROUTE_REPLICA);
    assert_false(pc->routes[1].fallback_primary);
    assert_false(pc->routes[2].postgres);
    assert_int_equal(pc->routes[2].target_port, 8069);
    assert_int_equal(pc->connect_wait, 0);      /* explicitly 0: refuse at once */
    assert_int_equal(pc->connect_timeout, 3);
    assert_int_equal(pc->max_replica_lag, 1048576);
    assert_true(pc->workers >= 1);
    assert_string_equal(pc->admin_listen, "127.0.0.1:5010");
    config_free(c);

    expect_proxy_error("scope: demo\n", "proxy.routes: at least one route is required");
    expect_proxy_error("scope: demo\nproxy:\n  routes:\n    - {listen: 127.0.0.1:5000, role: leader}\n",
                       ":4: proxy.routes[0].role: expected primary, replica or write_leader, got \"leader\"");
    expect_proxy_error("scope: demo\nproxy:\n  routes:\n    - {listen: 127.0.0.1:5000, rol: primary}\n",
                       "proxy.routes[0].rol: unknown route setting");
    expect_proxy_error("scope: demo\nproxy:\n  routes:\n    - {role: primary}\n", "proxy.routes[0]: a route needs listen");
    expect_proxy_error("scope: demo\nproxy:\n  routes:\n    - {name: a, listen: 127.0.0.1:5000}\n    - {name: b, listen: 127.0.0.1:5000}\n",
                       "proxy.routes[1]: same listen address as an earlier route");
    expect_proxy_error("scope: demo\nproxy:\n  routes:\n    - {listen: 127.0.0.1:5000, target_port: 70000}\n",
                       "proxy.routes[0].target_port: expected a port");
    expect_proxy_error("scope: demo\nproxy:\n  routes: {listen: 127.0.0.1:5000}\n", "proxy.routes: expected a list of routes");
    expect_proxy_error("scope: demo\nproxy:\n  workers: -1\n  routes:\n    - {listen: 127.0.0.1:5000}\n",
                       "proxy.workers: must be positive");

    /* an active-active group's write leader, the group's or a location's */
    c = load_proxy_text("scope: shop\nproxy:\n  routes:\n    - {listen: 127.0.0.1:5000, role: write_leader}\n"
                        "    - {listen: 127.0.0.1:5001, role: write_leader, location: wa}\n",
                        &err);
    assert_non_null(c);
    assert_int_equal(c->proxy.routes[0].role, ROUTE_WRITE_LEADER);
    assert_string_equal(c->proxy.routes[0].name, "write_leader-5000");
    assert_null(c->proxy.routes[0].location);
    assert_string_equal(c->proxy.routes[1].location, "wa");
    config_free(c);
    expect_proxy_error("scope: shop\nproxy:\n  routes:\n    - {listen: 127.0.0.1:5000, role: primary, location: wa}\n",
                       "proxy.routes[0]: location is a setting of write_leader routes only");
    expect_proxy_error("scope: shop\nproxy:\n  routes:\n    - {listen: 127.0.0.1:5000, role: write_leader, location: 'a/b'}\n",
                       "proxy.routes[0].location: expected a location name");
}

static void test_active_active_section(void **state)
{
    (void)state;
    Err err = {{0}};
    Config *c = load_text("scope: s\nname: n\npostgresql: {data_dir: /d}\nactive_active: {group: shop, location: vl}\n",
                          false, &err);
    assert_non_null(c);
    assert_string_equal(c->aa.group, "shop");
    assert_string_equal(c->aa.location, "vl");
    assert_int_equal(c->aa.ttl, 5);
    config_free(c);
    c = load_text("scope: s\nname: n\npostgresql: {data_dir: /d}\n", false, &err);
    assert_non_null(c);
    assert_null(c->aa.group);
    config_free(c);
    expect_error("scope: s\nname: n\npostgresql: {data_dir: /d}\nactive_active: {location: vl}\n",
                 "active_active.group: required in active_active");
    expect_error("scope: s\nname: n\npostgresql: {data_dir: /d}\nactive_active: {group: 'shop/x'}\n",
                 "active_active.group: expected a group name");
    expect_error("scope: s\nname: n\npostgresql: {data_dir: /d}\nactive_active: {group: shop, ttl: 1}\n",
                 "active_active.ttl: must be at least 2");
    assert_true(config_aa_name_ok("vl-1_a.b"));
    assert_false(config_aa_name_ok(""));
    assert_false(config_aa_name_ok(".."));
    assert_false(config_aa_name_ok("a b"));
    assert_false(config_aa_name_ok("a'b"));
}

static void test_agent_sections(void **state)
{
    (void)state;
    Err err = {{0}};
    Config *c = load_text("scope: s\nname: n\npostgresql: {data_dir: /d, connect_address: '10.0.0.5:5432'}\n"
                          "vip: {address: 10.0.0.100/24, interface: eth0}\n"
                          "dns: {server: '127.0.0.1:53', zone: example.test., record: db.example.test.,\n"
                          "      tsig_key_name: k, tsig_secret: c2VjcmV0}\n"
                          "notify: {webhook: {url: 'http://127.0.0.1:9/hook', secret: s}, lag_threshold: 1000}\n",
                          false, &err);
    assert_non_null(c);
    assert_string_equal(c->vip.address, "10.0.0.100/24");
    assert_int_equal(c->vip.arp_count, 3);
    assert_string_equal(c->dns.address, "10.0.0.5");     /* from postgresql.connect_address */
    assert_string_equal(c->dns.tsig_algorithm, "hmac-sha256");
    assert_int_equal(c->dns.ttl, 5);
    assert_string_equal(c->notify.webhook_url, "http://127.0.0.1:9/hook");
    assert_int_equal(c->notify.lag_threshold, 1000);
    assert_int_equal(c->notify.max_attempts, 6);
    config_free(c);
    expect_error("scope: s\nname: n\npostgresql: {data_dir: /d}\nvip: {address: 10.0.0.1}\n",
                 "vip.interface: required when vip.address is set");
    expect_error("scope: s\nname: n\npostgresql: {data_dir: /d}\ndns: {server: '127.0.0.1:53', zone: z.}\n",
                 "dns.record: required when dns.server is set");
}

static void test_site_section(void **state)
{
    (void)state;
    Err err = {{0}};
    Config *c = load_text("scope: a\nname: n\npostgresql: {data_dir: /d}\nsite:\n  peer: {scope: b, etcd3: {hosts: "
                          "'10.0.0.2:2379'}}\n  failover: automatic\n  witness:\n    ttl: 6\n    etcd3: {hosts: "
                          "'10.0.0.3:2379'}\n",
                          false, &err);
    assert_non_null(c);
    assert_true(c->site.automatic);
    assert_int_equal(c->site.witness_ttl, 6);
    assert_int_equal(c->site.n_witness_etcd_hosts, 1);
    assert_string_equal(c->site.witness_etcd_hosts[0], "10.0.0.3:2379");
    config_free(c);
    c = load_text("scope: a\nname: n\npostgresql: {data_dir: /d}\n", false, &err);
    assert_non_null(c);
    assert_false(c->site.automatic);   /* manual by default */
    assert_int_equal(c->site.witness_ttl, 10);
    config_free(c);
    expect_error("scope: a\nname: n\npostgresql: {data_dir: /d}\nsite:\n  failover: yes-please\n",
                 "node.yml:5: site.failover: must be manual or automatic, got \"yes-please\"");
    expect_error("scope: a\nname: n\npostgresql: {data_dir: /d}\nsite:\n  failover: automatic\n",
                 "site.peer.scope: required when site.failover is automatic");
    expect_error("scope: a\nname: n\npostgresql: {data_dir: /d}\nsite:\n  peer: {scope: b, etcd3: {hosts: h:1}}\n"
                 "  failover: automatic\n",
                 "site.witness.etcd3.hosts: required when site.failover is automatic");
    expect_error("scope: a\nname: n\npostgresql: {data_dir: /d}\nsite:\n  peer: {scope: b}\n",
                 "site.peer.etcd3.hosts: required when site.peer.scope is set");
    expect_error("scope: a\nname: n\npostgresql: {data_dir: /d}\nsite:\n  witness: {ttl: 1}\n",
                 "site.witness.ttl: must be at least 2");
}

static void test_backup_section(void **state)
{
    (void)state;
    Err err = {{0}};
    const char *base = "scope: s\nname: n\npostgresql: {data_dir: /d}\n";
    char text[512];
    /* no section: no repository, no archiving */
    Config *c = load_text(base, false, &err);
    assert_non_null(c);
    assert_null(c->backup.repo_path);
    assert_false(c->backup.archive);
    config_free(c);
    /* a repository: archiving on, zstd level 3, two workers */
    str_fmt(text, sizeof(text), "%sbackup:\n  repository: {path: /var/lib/pgvigil/repo}\n", base);
    c = load_text(text, false, &err);
    assert_non_null(c);
    assert_string_equal(c->backup.repo_type, "posix");
    assert_string_equal(c->backup.repo_path, "/var/lib/pgvigil/repo");
    assert_true(c->backup.archive);
    assert_string_equal(c->backup.compression, "zstd");
    assert_int_equal(c->backup.compression_level, 3);
    assert_int_equal(c->backup.archive_workers, 2);
    assert_int_equal(c->backup.prefetch, 8);
    config_free(c);
    str_fmt(text, sizeof(text),
            "%sbackup:\n  repository: {type: posix, path: /r}\n  compression: gzip\n  archive: off\n"
            "  archive_workers: 4\n  prefetch: 0\n", base);
    c = load_text(text, false, &err);
    assert_non_null(c);
    assert_false(c->backup.archive);
    assert_int_equal(c->backup.compression_level, 6);
    assert_int_equal(c->backup.archive_workers, 4);
    assert_int_equal(c->backup.prefetch, 0);
    config_free(c);

    str_fmt(text, sizeof(text), "%sbackup:\n  repository: {path: relative/dir}\n", base);
    expect_error(text, "node.yml:5: backup.repository.path");
    str_fmt(text, sizeof(text), "%sbackup:\n  repository: {type: ftp, path: /r}\n", base);
    expect_error(text, "node.yml:5: backup.repository.type: expected posix or s3, got \"ftp\"");
    str_fmt(text, sizeof(text), "%sbackup:\n  repository: {path: /r}\n  compression: brotli\n", base);
    expect_error(text, "node.yml:6: backup.compression: expected zstd, lz4, gzip or none, got \"brotli\"");
    str_fmt(text, sizeof(text), "%sbackup:\n  repository: {path: /r}\n  compression: gzip\n  compression_level: 12\n", base);
    expect_error(text, "node.yml:7: backup.compression_level: 12 is out of range for gzip");
    str_fmt(text, sizeof(text), "%sbackup:\n  archive: on\n", base);
    expect_error(text, "node.yml:5: backup.repository.path: required when backup.archive is on");
    str_fmt(text, sizeof(text), "%sbackup:\n  repository: {path: /r}\n  archive_workers: 0\n", base);
    expect_error(text, "node.yml:6: backup.archive_workers: expected 1 to 32, got 0");
    str_fmt(text, sizeof(text), "%sbackup:\n  repository: {path: /r}\n  prefetch: 65\n", base);
    expect_error(text, "node.yml:6: backup.prefetch: expected 0 to 64, got 65");
    str_fmt(text, sizeof(text), "%sbackup:\n  repository: {path: /r}\n  retention_full: -1\n", base);
    expect_error(text, "node.yml:6: backup.retention_full: must not be negative");
    str_fmt(text, sizeof(text), "%sbackup:\n  repository: {path: /r}\n  retention_full: 3\n  retention_days: 7\n", base);
    c = load_text(text, false, &err);
    assert_non_null(c);
    assert_int_equal(c->backup.retention_full, 3);
    assert_int_equal(c->backup.retention_days, 7);
    config_free(c);
}

/* backup.repository.type: s3, its keys, defaults, the environment's credentials and errors */
static void test_backup_s3(void **state)
{
    (void)state;
    Err err = {{0}};
    const char *base = "scope: s\nname: n\npostgresql: {data_dir: /d}\nbackup:\n  repository:\n    type: s3\n";
    char text[1024];
    unsetenv("PGVIGIL_S3_KEY");
    unsetenv("PGVIGIL_S3_SECRET");
    /* complete: defaults for region, style and part size; archiving on */
    str_fmt(text, sizeof(text),
            "%s    s3_endpoint: http://127.0.0.1:9000\n    s3_bucket: pg-backups\n    s3_key: AK\n    s3_secret: SK\n", base);
    Config *c = load_text(text, false, &err);
    assert_non_null(c);
    assert_string_equal(c->backup.repo_type, "s3");
    assert_null(c->backup.repo_path);
    assert_true(config_has_repository(&c->backup));
    assert_true(c->backup.archive);
    assert_string_equal(c->backup.s3_endpoint, "http://127.0.0.1:9000");
    assert_string_equal(c->backup.s3_bucket, "pg-backups");
    assert_string_equal(c->backup.s3_region, "us-east-1");
    assert_string_equal(c->backup.s3_uri_style, "path");
    assert_string_equal(c->backup.s3_key, "AK");
    assert_string_equal(c->backup.s3_secret, "SK");
    assert_int_equal(c->backup.s3_part_size, 16 * 1024 * 1024);
    config_free(c);
    /* every key set */
    str_fmt(text, sizeof(text),
            "%s    s3_endpoint: https://s3.eu-west-3.amazonaws.com/\n    s3_bucket: b-1\n    s3_region: eu-west-3\n"
            "    s3_uri_style: host\n    s3_key: AK\n    s3_secret: SK\n    s3_part_size: 65536\n", base);
    c = load_text(text, false, &err);
    assert_non_null(c);
    assert_string_equal(c->backup.s3_region, "eu-west-3");
    assert_string_equal(c->backup.s3_uri_style, "host");
    assert_int_equal(c->backup.s3_part_size, 65536);
    config_free(c);
    /* credentials from the environment; the file's win */
    setenv("PGVIGIL_S3_KEY", "envkey", 1);
    setenv("PGVIGIL_S3_SECRET", "envsecret", 1);
    str_fmt(text, sizeof(text), "%s    s3_endpoint: http://h:9000\n    s3_bucket: bkt\n", base);
    c = load_text(text, false, &err);
    assert_non_null(c);
    assert_string_equal(c->backup.s3_key, "envkey");
    assert_string_equal(c->backup.s3_secret, "envsecret");
    config_free(c);
    str_fmt(text, sizeof(text), "%s    s3_endpoint: http://h:9000\n    s3_bucket: bkt\n    s3_key: filekey\n", base);
    c = load_text(text, false, &err);
    assert_non_null(c);
    assert_string_equal(c->backup.s3_key, "filekey");
    assert_string_equal(c->backup.s3_secret, "envsecret");
    config_free(c);
    unsetenv("PGVIGIL_S3_KEY");
    unsetenv("PGVIGIL_S3_SECRET");
    /* a client command loads without credentials (repo_open names the key when it needs them) */
    str_fmt(text, sizeof(text), "%s    s3_endpoint: http://h:9000\n    s3_bucket: bkt\n", base);
    c = load_text(text, true, &err);
    assert_non_null(c);
    assert_null(c->backup.s3_secret);
    config_free(c);

    /* errors: one line, naming the key */
    const char *creds = "    s3_key: AK\n    s3_secret: SK\n";
    str_fmt(text, sizeof(text), "%s    s3_bucket: bkt\n%s", base, creds);
    expect_error(text, "node.yml:6: backup.repository.s3_endpoint: required for an s3 repository");
    str_fmt(text, sizeof(text), "%s    s3_endpoint: ftp://h\n    s3_bucket: bkt\n%s", base, creds);
    expect_error(text, "node.yml:7: backup.repository.s3_endpoint: expected http://host[:port] or https://host[:port]");
    str_fmt(text, sizeof(text), "%s    s3_endpoint: http://h:9000/some/path\n    s3_bucket: bkt\n%s", base, creds);
    expect_error(text, "node.yml:7: backup.repository.s3_endpoint: expected");
    str_fmt(text, sizeof(text), "%s    s3_endpoint: http://\n    s3_bucket: bkt\n%s", base, creds);
    expect_error(text, "node.yml:7: backup.repository.s3_endpoint: expected");
    str_fmt(text, sizeof(text), "%s    s3_endpoint: http://h\n%s", base, creds);
    expect_error(text, "node.yml:6: backup.repository.s3_bucket: required for an s3 repository");
    str_fmt(text, sizeof(text), "%s    s3_endpoint: http://h\n    s3_bucket: My_Bucket\n%s", base, creds);
    expect_error(text, "node.yml:8: backup.repository.s3_bucket: expected 3 to 63 lower-case letters");
    str_fmt(text, sizeof(text), "%s    s3_endpoint: http://h\n    s3_bucket: a/b\n%s", base, creds);
    expect_error(text, "backup.repository.s3_bucket: expected 3 to 63");
    str_fmt(text, sizeof(text), "%s    s3_endpoint: http://h\n    s3_bucket: bkt\n    s3_uri_style: vhost\n%s", base, creds);
    expect_error(text, "node.yml:9: backup.repository.s3_uri_style: expected path or host, got \"vhost\"");
    str_fmt(text, sizeof(text), "%s    s3_endpoint: https://h\n    s3_bucket: my.bkt\n    s3_uri_style: host\n%s", base, creds);
    expect_error(text, "node.yml:9: backup.repository.s3_uri_style: host style with https needs a bucket name without dots");
    str_fmt(text, sizeof(text), "%s    s3_endpoint: http://h\n    s3_bucket: bkt\n    s3_region: \"eu west\"\n%s", base, creds);
    expect_error(text, "node.yml:9: backup.repository.s3_region: expected a region name");
    str_fmt(text, sizeof(text), "%s    s3_endpoint: http://h\n    s3_bucket: bkt\n    s3_part_size: 1000\n%s", base, creds);
    expect_error(text, "node.yml:9: backup.repository.s3_part_size: expected 65536 to 5368709120 bytes, got 1000");
    str_fmt(text, sizeof(text), "%s    s3_endpoint: http://h\n    s3_bucket: bkt\n    s3_part_size: 16MB\n%s", base, creds);
    expect_error(text, "node.yml:9: backup.repository.s3_part_size");
    str_fmt(text, sizeof(text), "%s    s3_endpoint: http://h\n    s3_bucket: bkt\n    s3_secret: SK\n", base);
    expect_error(text, "node.yml:6: backup.repository.s3_key: required for an s3 repository (or set PGVIGIL_S3_KEY");
    str_fmt(text, sizeof(text), "%s    s3_endpoint: http://h\n    s3_bucket: bkt\n    s3_key: AK\n", base);
    expect_error(text, "node.yml:6: backup.repository.s3_secret: required for an s3 repository (or set PGVIGIL_S3_SECRET");
    str_fmt(text, sizeof(text), "%s    s3_endpoint: http://h\n    s3_bucket: bkt\n    s3_key: AK\n    s3_secret: \"\"\n", base);
    expect_error(text, "node.yml:10: backup.repository.s3_secret");
    str_fmt(text, sizeof(text), "%s    path: /r\n    s3_endpoint: http://h\n    s3_bucket: bkt\n%s", base, creds);
    expect_error(text, "node.yml:7: backup.repository.path: only for type posix");
    /* the secret is never in a message */
    str_fmt(text, sizeof(text), "%s    s3_endpoint: http://h\n    s3_bucket: BAD\n    s3_key: AK\n    s3_secret: TOPSECRET\n", base);
    c = load_text(text, false, &err);
    assert_null(c);
    assert_null(strstr(err.msg, "TOPSECRET"));
}

/* backup.encryption and its key: the file (owner only), else the environment; errors name the
 * key file and never hold the key */
static void write_key_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_backup_encryption(void **state)
{
    (void)state;
    Err err = {{0}};
    const char *base = "scope: s\nname: n\npostgresql: {data_dir: /d}\nbackup:\n  repository: {path: /r}\n";
    char key[sizeof(tmpdir) + 16], text[1024], want[512];
    str_fmt(key, sizeof(key), "%s/repo.key", tmpdir);
    unsetenv("PGVIGIL_BACKUP_KEY");
    write_key_file(key, "a long enough key for the repository\n", 0600);

    /* default: none */
    Config *c = load_text(base, false, &err);
    assert_non_null(c);
    assert_string_equal(c->backup.encryption, "none");
    assert_null(c->backup.encryption_key_file);
    config_free(c);
    /* aes-256-gcm with a key file */
    str_fmt(text, sizeof(text), "%s  encryption: aes-256-gcm\n  encryption_key_file: %s\n", base, key);
    c = load_text(text, false, &err);
    assert_non_null(c);
    assert_string_equal(c->backup.encryption, "aes-256-gcm");
    assert_string_equal(c->backup.encryption_key_file, key);
    config_free(c);
    /* with the key in the environment */
    str_fmt(text, sizeof(text), "%s  encryption: aes-256-gcm\n", base);
    setenv("PGVIGIL_BACKUP_KEY", "a long enough key from the environment", 1);
    c = load_text(text, false, &err);
    assert_non_null(c);
    assert_null(c->backup.encryption_key_file);
    config_free(c);
    unsetenv("PGVIGIL_BACKUP_KEY");
    expect_error(text, "node.yml:6: backup.encryption_key_file: required with backup.encryption aes-256-gcm (or set "
                       "PGVIGIL_BACKUP_KEY in the environment)");
    /* a client command loads without the key (repo_open reads it when it opens the repository) */
    c = load_text(text, true, &err);
    assert_non_null(c);
    config_free(c);

    str_fmt(text, sizeof(text), "%s  encryption: aes-256-cbc\n", base);
    expect_error(text, "node.yml:6: backup.encryption: expected none or aes-256-gcm, got \"aes-256-cbc\"");
    str_fmt(text, sizeof(text), "%s  encryption_key_file: %s\n", base, key);
    expect_error(text, "node.yml:6: backup.encryption_key_file: set, but backup.encryption is none");
    str_fmt(text, sizeof(text), "%s  encryption: aes-256-gcm\n  encryption_key_file: keys/repo.key\n", base);
    expect_error(text, "node.yml:7: backup.encryption_key_file");
    str_fmt(text, sizeof(text), "scope: s\nname: n\npostgresql: {data_dir: /d}\nbackup:\n  encryption: aes-256-gcm\n"
            "  encryption_key_file: %s\n", key);
    expect_error(text, "node.yml:5: backup.repository.path: required when backup.encryption is set");
    /* a key file the group or others may read, a missing one, a short one: one line naming it */
    str_fmt(text, sizeof(text), "%s  encryption: aes-256-gcm\n  encryption_key_file: %s\n", base, key);
    write_key_file(key, "a long enough key for the repository\n", 0644);
    str_fmt(want, sizeof(want), "node.yml:7: backup.encryption_key_file %s: group or others may access it (mode 0644)",
            key);
    expect_error(text, want);
    write_key_file(key, "TOPSECRET\n", 0600);
    str_fmt(want, sizeof(want), "node.yml:7: backup.encryption_key_file %s: the key is too short", key);
    expect_error(text, want);
    c = load_text(text, false, &err);
    assert_null(c);
    assert_null(strstr(err.msg, "TOPSECRET"));
    unlink(key);
    str_fmt(want, sizeof(want), "node.yml:7: backup.encryption_key_file %s: cannot open it: No such file", key);
    expect_error(text, want);
}

/* postgresql.create_replica_methods: default basebackup; known names, once each; pgvigil needs a
 * repository */
static void test_replica_methods(void **state)
{
    (void)state;
    Err err = {{0}};
    const char *base = "scope: s\nname: n\nbackup:\n  repository: {path: /r}\n";
    char text[512];
    str_fmt(text, sizeof(text), "%spostgresql: {data_dir: /d}\n", base);
    Config *c = load_text(text, false, &err);
    assert_non_null(c);
    assert_int_equal(c->n_replica_methods, 1);
    assert_string_equal(c->replica_methods[0], "basebackup");
    assert_true(config_replica_method(c, "basebackup"));
    assert_false(config_replica_method(c, "pgvigil"));
    config_free(c);
    str_fmt(text, sizeof(text), "%spostgresql:\n  data_dir: /d\n  create_replica_methods: [pgvigil, basebackup]\n", base);
    c = load_text(text, false, &err);
    assert_non_null(c);
    assert_int_equal(c->n_replica_methods, 2);
    assert_string_equal(c->replica_methods[0], "pgvigil");
    assert_string_equal(c->replica_methods[1], "basebackup");
    assert_true(config_replica_method(c, "pgvigil"));
    config_free(c);
    str_fmt(text, sizeof(text), "%spostgresql:\n  data_dir: /d\n  create_replica_methods:\n    - pgvigil\n", base);
    c = load_text(text, false, &err);
    assert_non_null(c);
    assert_int_equal(c->n_replica_methods, 1);
    config_free(c);

    str_fmt(text, sizeof(text), "%spostgresql:\n  data_dir: /d\n  create_replica_methods: [pgbackrest, basebackup]\n", base);
    expect_error(text, "node.yml:7: postgresql.create_replica_methods[0]: expected pgvigil or basebackup, got \"pgbackrest\"");
    str_fmt(text, sizeof(text), "%spostgresql:\n  data_dir: /d\n  create_replica_methods: [basebackup, basebackup]\n", base);
    expect_error(text, "node.yml:7: postgresql.create_replica_methods[1]: basebackup is named twice");
    str_fmt(text, sizeof(text), "%spostgresql:\n  data_dir: /d\n  create_replica_methods: []\n", base);
    expect_error(text, "node.yml:7: postgresql.create_replica_methods: must name at least one method");
    str_fmt(text, sizeof(text), "%spostgresql:\n  data_dir: /d\n  create_replica_methods: pgvigil\n", base);
    expect_error(text, "node.yml:7: postgresql.create_replica_methods: expected a list of strings, got \"pgvigil\"");
    expect_error("scope: s\nname: n\npostgresql:\n  data_dir: /d\n  create_replica_methods: [basebackup, pgvigil]\n",
                 "node.yml:5: postgresql.create_replica_methods[1]: pgvigil restores from backup.repository, which is not set");
}

/* bootstrap.method and bootstrap.pgvigil_restore: a target, a repository to restore from that
 * is not the node's own */
static void test_bootstrap_restore(void **state)
{
    (void)state;
    Err err = {{0}};
    const char *base = "scope: s\nname: n\npostgresql: {data_dir: /d}\nbackup:\n  repository: {path: /new/repo}\n";
    char text[1024];
    /* default: initdb; a pgvigil_restore section is ignored then */
    str_fmt(text, sizeof(text), "%sbootstrap:\n  pgvigil_restore: {target_lsn: nonsense}\n", base);
    Config *c = load_text(text, false, &err);
    assert_non_null(c);
    assert_string_equal(c->bootstrap_method, "initdb");
    assert_false(config_bootstrap_restores(c));
    config_free(c);
    str_fmt(text, sizeof(text),
            "%sbootstrap:\n  method: pgvigil_restore\n  pgvigil_restore:\n    backup: 20261205T020300F\n"
            "    target_time: '2026-12-05 02:03:00+00'\n    repository: {path: /old/repo}\n", base);
    c = load_text(text, false, &err);
    assert_non_null(c);
    assert_true(config_bootstrap_restores(c));
    assert_string_equal(c->boot_restore.backup, "20261205T020300F");
    assert_string_equal(c->boot_restore.target_time, "2026-12-05 02:03:00+00");
    assert_null(c->boot_restore.target_lsn);
    assert_string_equal(c->boot_restore.repo.repo_type, "posix");
    assert_string_equal(c->boot_restore.repo.repo_path, "/old/repo");
    assert_string_equal(c->boot_restore.repo.encryption, "none");
    config_free(c);
    /* s3 source, no credentials needed at load (read when the repository is opened) */
    unsetenv("PGVIGIL_S3_KEY");
    unsetenv("PGVIGIL_S3_SECRET");
    str_fmt(text, sizeof(text),
            "%sbootstrap:\n  method: pgvigil_restore\n  pgvigil_restore:\n    target_lsn: 0/3000060\n"
            "    repository: {type: s3, s3_endpoint: 'http://127.0.0.1:9000', s3_bucket: old-bucket}\n"
            "    encryption: aes-256-gcm\n    encryption_key_file: /etc/pgvigil/old.key\n", base);
    c = load_text(text, false, &err);
    assert_non_null(c);
    assert_string_equal(c->boot_restore.target_lsn, "0/3000060");
    assert_string_equal(c->boot_restore.repo.s3_bucket, "old-bucket");
    assert_string_equal(c->boot_restore.repo.s3_region, "us-east-1");
    assert_string_equal(c->boot_restore.repo.encryption, "aes-256-gcm");
    config_free(c);

    str_fmt(text, sizeof(text), "%sbootstrap:\n  method: pgbackrest\n", base);
    expect_error(text, "node.yml:7: bootstrap.method: expected initdb or pgvigil_restore, got \"pgbackrest\"");
    str_fmt(text, sizeof(text), "%sbootstrap:\n  method: pgvigil_restore\n", base);
    expect_error(text, "node.yml:7: bootstrap.pgvigil_restore.repository.path: required with bootstrap.method pgvigil_restore");
    str_fmt(text, sizeof(text), "%sbootstrap:\n  method: pgvigil_restore\n  pgvigil_restore:\n    repository: {path: /new/repo/}\n",
            base);
    expect_error(text, "node.yml:9: bootstrap.pgvigil_restore.repository: is this node's backup.repository");
    str_fmt(text, sizeof(text), "%sbootstrap:\n  method: pgvigil_restore\n  pgvigil_restore:\n    repository: {path: old/repo}\n",
            base);
    expect_error(text, "node.yml:9: bootstrap.pgvigil_restore.repository.path: must be an absolute path");
    str_fmt(text, sizeof(text), "%sbootstrap:\n  method: pgvigil_restore\n  pgvigil_restore:\n    repository: {type: ftp, path: /o}\n",
            base);
    expect_error(text, "node.yml:9: bootstrap.pgvigil_restore.repository.type: expected posix or s3, got \"ftp\"");
    str_fmt(text, sizeof(text),
            "%sbootstrap:\n  method: pgvigil_restore\n  pgvigil_restore:\n    repository: {path: /o}\n    target_lsn: 3000060\n",
            base);
    expect_error(text, "node.yml:10: bootstrap.pgvigil_restore.target_lsn: expected an LSN such as 0/3000060, got \"3000060\"");
    str_fmt(text, sizeof(text),
            "%sbootstrap:\n  method: pgvigil_restore\n  pgvigil_restore:\n    repository: {path: /o}\n"
            "    target_time: '2026-12-05 02:03:00+00'\n    target_lsn: 0/3000060\n", base);
    expect_error(text, "node.yml:11: bootstrap.pgvigil_restore.target_lsn: give target_time or target_lsn, not both");
    str_fmt(text, sizeof(text),
            "%sbootstrap:\n  method: pgvigil_restore\n  pgvigil_restore:\n    repository: {path: /o}\n    target_time: yesterday\n",
            base);
    expect_error(text, "node.yml:10: bootstrap.pgvigil_restore.target_time: expected a time such as");
    str_fmt(text, sizeof(text),
            "%sbootstrap:\n  method: pgvigil_restore\n  pgvigil_restore:\n    repository: {type: s3, s3_bucket: b-1}\n", base);
    expect_error(text, "bootstrap.pgvigil_restore.repository.s3_endpoint: required for an s3 repository");
    str_fmt(text, sizeof(text),
            "%sbootstrap:\n  method: pgvigil_restore\n  pgvigil_restore:\n    repository: {path: /o}\n    encryption: rot13\n",
            base);
    expect_error(text, "node.yml:10: bootstrap.pgvigil_restore.encryption: expected none or aes-256-gcm, got \"rot13\"");
    str_fmt(text, sizeof(text),
            "%sbootstrap:\n  method: pgvigil_restore\n  pgvigil_restore:\n    repository: {path: /o}\n"
            "    encryption_key_file: /k\n", base);
    expect_error(text, "node.yml:10: bootstrap.pgvigil_restore.encryption_key_file: set, but bootstrap.pgvigil_restore.encryption is none");
    /* the same bucket of the same endpoint is the same repository */
    str_fmt(text, sizeof(text),
            "scope: s\nname: n\npostgresql: {data_dir: /d}\nbackup:\n  repository: {type: s3, s3_endpoint: 'http://h:9000', "
            "s3_bucket: bk1, s3_key: k, s3_secret: s}\nbootstrap:\n  method: pgvigil_restore\n  pgvigil_restore:\n"
            "    repository: {type: s3, s3_endpoint: 'http://H:9000/', s3_bucket: bk1}\n");
    expect_error(text, "node.yml:9: bootstrap.pgvigil_restore.repository: is this node's backup.repository");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_variants),
        cmocka_unit_test(test_merge_keys),
        cmocka_unit_test(test_client),
        cmocka_unit_test(test_missing_and_empty),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_required),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_dcs_ranges),
        cmocka_unit_test(test_dynconfig_defaults_json),
        cmocka_unit_test(test_dynconfig_round_trip),
        cmocka_unit_test(test_dynconfig_json_errors),
        cmocka_unit_test(test_dynconfig_standby_cluster),
        cmocka_unit_test(test_yaml_standby_cluster),
        cmocka_unit_test(test_json_set),
        cmocka_unit_test(test_json_merge),
        cmocka_unit_test(test_kvlist),
        cmocka_unit_test(test_split_hostport),
        cmocka_unit_test(test_active_active_section),
        cmocka_unit_test(test_parse_scalars),
        cmocka_unit_test(test_proxy_config),
        cmocka_unit_test(test_agent_sections),
        cmocka_unit_test(test_site_section),
        cmocka_unit_test(test_backup_section),
        cmocka_unit_test(test_backup_s3),
        cmocka_unit_test(test_initdb_checksums),
        cmocka_unit_test(test_backup_encryption),
        cmocka_unit_test(test_replica_methods),
        cmocka_unit_test(test_bootstrap_restore),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
