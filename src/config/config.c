/* Node configuration: read a Patroni-style YAML file with libyaml, fill in defaults and
 * validate. Every error is one line naming the file, the line and the dotted key. */
#include "common/common.h"
#include "config/config.h"
#include "config/dynconfig_int.h"
#include "backup/cipher.h"
#include "backup/compress.h"
#include "backup/schedule.h"
#include "common/log.h"
#include "common/lsn.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <unistd.h>
#include <yaml.h>

#define MAX_CONFIG_BYTES (16 * 1024 * 1024)
#define ETCD_DEFAULT_PORT "2379"

typedef enum {
    K_SECTION,  /* a mapping of further known keys */
    K_STR,      /* any scalar, kept as text */
    K_ABSPATH,  /* a string that must be an absolute path */
    K_ADDR,     /* "host:port" */
    K_HOSTS,    /* etcd3.hosts: a list, or "h1:p,h2:p" */
    K_HOST,     /* etcd3.host: one "host[:port]" */
    K_INT,
    K_INT64,
    K_MS,       /* seconds, fractions allowed, into an int of milliseconds */
    K_BOOL,
    K_LINES,    /* a list of strings */
    K_KVMAP,    /* a mapping of scalars, into a KvList */
    K_INITDB,   /* a list of flags and mappings, into a KvList */
    K_ROUTES,   /* proxy.routes: a list of mappings, into ProxyRoute[] */
    K_SLOTS,    /* bootstrap.dcs.slots: {name: {type: physical}}, into DynConfig.slots */
} KeyKind;

typedef struct KeySpec {
    const char *path;
    KeyKind kind;
    size_t off;                 /* field in Config */
    size_t off_n;               /* K_HOSTS, K_LINES: the int count in Config */
} KeySpec;

#define C(f) offsetof(Config, f)
#define D(f) offsetof(Config, bootstrap_dcs.f)
#define BR(f) offsetof(Config, boot_restore.f)

/* The known keys; anything else in the file is ignored. */
static const KeySpec keys[] = {
    {"scope", K_STR, C(scope), 0},
    {"namespace", K_STR, C(namespace_), 0},
    {"name", K_STR, C(name), 0},
    {"log", K_SECTION, 0, 0},
    {"log.level", K_STR, C(log_level), 0},
    {"pid_file", K_STR, C(pid_file), 0},
    {"etcd3", K_SECTION, 0, 0},
    {"etcd3.hosts", K_HOSTS, C(etcd_hosts), C(n_etcd_hosts)},
    {"etcd3.host", K_HOST, 0, 0},
    {"etcd3.protocol", K_STR, C(etcd_protocol), 0},
    {"etcd3.username", K_STR, C(etcd_username), 0},
    {"etcd3.password", K_STR, C(etcd_password), 0},
    {"restapi", K_SECTION, 0, 0},
    {"restapi.listen", K_ADDR, C(restapi_listen), 0},
    {"restapi.connect_address", K_ADDR, C(restapi_connect_address), 0},
    {"restapi.authentication", K_SECTION, 0, 0},
    {"restapi.authentication.username", K_STR, C(restapi_auth.username), 0},
    {"restapi.authentication.password", K_STR, C(restapi_auth.password), 0},
    {"postgresql", K_SECTION, 0, 0},
    {"postgresql.listen", K_ADDR, C(pg_listen), 0},
    {"postgresql.connect_address", K_ADDR, C(pg_connect_address), 0},
    {"postgresql.data_dir", K_ABSPATH, C(pg_data_dir), 0},
    {"postgresql.bin_dir", K_STR, C(pg_bin_dir), 0},
    {"postgresql.run_as", K_STR, C(pg_run_as), 0},
    {"postgresql.unix_socket_directories", K_STR, C(pg_socket_dir), 0},
    {"postgresql.authentication", K_SECTION, 0, 0},
    {"postgresql.authentication.superuser", K_SECTION, 0, 0},
    {"postgresql.authentication.superuser.username", K_STR, C(pg_superuser.username), 0},
    {"postgresql.authentication.superuser.password", K_STR, C(pg_superuser.password), 0},
    {"postgresql.authentication.replication", K_SECTION, 0, 0},
    {"postgresql.authentication.replication.username", K_STR, C(pg_replication.username), 0},
    {"postgresql.authentication.replication.password", K_STR, C(pg_replication.password), 0},
    {"postgresql.authentication.rewind", K_SECTION, 0, 0},
    {"postgresql.authentication.rewind.username", K_STR, C(pg_rewind.username), 0},
    {"postgresql.authentication.rewind.password", K_STR, C(pg_rewind.password), 0},
    {"postgresql.parameters", K_KVMAP, C(pg_parameters), 0},
    {"postgresql.pg_hba", K_LINES, C(pg_hba), C(n_pg_hba)},
    {"postgresql.rewind_method", K_STR, C(rewind_method), 0},
    {"postgresql.remove_data_directory_on_rewind_failure", K_BOOL,
     C(remove_data_directory_on_rewind_failure), 0},
    {"postgresql.remove_data_directory_on_diverged_timelines", K_BOOL,
     C(remove_data_directory_on_diverged_timelines), 0},
    {"postgresql.callbacks", K_SECTION, 0, 0},
    {"postgresql.callbacks.on_start", K_STR, C(cb_on_start), 0},
    {"postgresql.callbacks.on_stop", K_STR, C(cb_on_stop), 0},
    {"postgresql.callbacks.on_role_change", K_STR, C(cb_on_role_change), 0},
    {"postgresql.callbacks.on_restart", K_STR, C(cb_on_restart), 0},
    {"postgresql.callbacks.on_reload", K_STR, C(cb_on_reload), 0},
    {"postgresql.create_replica_methods", K_LINES, C(replica_methods), C(n_replica_methods)},
    {"tags", K_SECTION, 0, 0},
    {"tags.nofailover", K_BOOL, C(tags.nofailover), 0},
    {"tags.noloadbalance", K_BOOL, C(tags.noloadbalance), 0},
    {"tags.nosync", K_BOOL, C(tags.nosync), 0},
    {"tags.clonefrom", K_BOOL, C(tags.clonefrom), 0},
    {"tags.failover_priority", K_INT, C(tags.failover_priority), 0},
    {"site", K_SECTION, 0, 0},
    {"site.peer", K_SECTION, 0, 0},
    {"site.peer.scope", K_STR, C(site.peer_scope), 0},
    {"site.peer.namespace", K_STR, C(site.peer_namespace), 0},
    {"site.peer.etcd3", K_SECTION, 0, 0},
    {"site.peer.etcd3.hosts", K_HOSTS, C(site.peer_etcd_hosts), C(site.n_peer_etcd_hosts)},
    {"site.failover", K_STR, C(site.failover), 0},
    {"site.witness", K_SECTION, 0, 0},
    {"site.witness.namespace", K_STR, C(site.witness_namespace), 0},
    {"site.witness.ttl", K_INT, C(site.witness_ttl), 0},
    {"site.witness.etcd3", K_SECTION, 0, 0},
    {"site.witness.etcd3.hosts", K_HOSTS, C(site.witness_etcd_hosts), C(site.n_witness_etcd_hosts)},
    {"active_active", K_SECTION, 0, 0},
    {"active_active.group", K_STR, C(aa.group), 0},
    {"active_active.location", K_STR, C(aa.location), 0},
    {"active_active.ttl", K_INT, C(aa.ttl), 0},
    {"bootstrap", K_SECTION, 0, 0},
    {"bootstrap.dcs", K_SECTION, 0, 0},
    {"bootstrap.dcs.ttl", K_INT, D(ttl), 0},
    {"bootstrap.dcs.loop_wait", K_MS, D(loop_wait_ms), 0},
    {"bootstrap.dcs.retry_timeout", K_INT, D(retry_timeout), 0},
    {"bootstrap.dcs.maximum_lag_on_failover", K_INT64, D(maximum_lag_on_failover), 0},
    {"bootstrap.dcs.synchronous_mode", K_BOOL, D(synchronous_mode), 0},
    {"bootstrap.dcs.synchronous_mode_strict", K_BOOL, D(synchronous_mode_strict), 0},
    {"bootstrap.dcs.synchronous_node_count", K_INT, D(synchronous_node_count), 0},
    {"bootstrap.dcs.pause", K_BOOL, D(pause), 0},
    {"bootstrap.dcs.primary_start_timeout", K_INT, D(primary_start_timeout), 0},
    {"bootstrap.dcs.master_start_timeout", K_INT, D(primary_start_timeout), 0}, /* old name */
    {"bootstrap.dcs.postgresql", K_SECTION, 0, 0},
    {"bootstrap.dcs.postgresql.use_pg_rewind", K_BOOL, D(use_pg_rewind), 0},
    {"bootstrap.dcs.postgresql.use_slots", K_BOOL, D(use_slots), 0},
    {"bootstrap.dcs.postgresql.parameters", K_KVMAP, D(pg_parameters), 0},
    {"bootstrap.dcs.slots", K_SLOTS, 0, 0},
    {"bootstrap.dcs.site_lag_guard_bytes", K_INT64, D(site_lag_guard_bytes), 0},
    {"bootstrap.dcs.standby_cluster", K_SECTION, 0, 0},
    {"bootstrap.dcs.standby_cluster.host", K_STR, D(standby.host), 0},
    {"bootstrap.dcs.standby_cluster.port", K_INT, D(standby.port), 0},
    {"bootstrap.dcs.standby_cluster.primary_slot_name", K_STR, D(standby.primary_slot_name), 0},
    {"bootstrap.dcs.standby_cluster.restore_command", K_STR, D(standby.restore_command), 0},
    {"bootstrap.dcs.standby_cluster.recovery_min_apply_delay", K_STR, D(standby.recovery_min_apply_delay), 0},
    {"bootstrap.dcs.standby_cluster.create_replica_methods", K_LINES, D(standby.create_replica_methods),
     D(standby.n_create_replica_methods)},
    {"bootstrap.initdb", K_INITDB, C(initdb_options), 0},
    {"bootstrap.method", K_STR, C(bootstrap_method), 0},
    {"bootstrap.pgvigil_restore", K_SECTION, 0, 0},
    {"bootstrap.pgvigil_restore.backup", K_STR, BR(backup), 0},
    {"bootstrap.pgvigil_restore.target_time", K_STR, BR(target_time), 0},
    {"bootstrap.pgvigil_restore.target_lsn", K_STR, BR(target_lsn), 0},
    {"bootstrap.pgvigil_restore.repository", K_SECTION, 0, 0},
    {"bootstrap.pgvigil_restore.repository.type", K_STR, BR(repo.repo_type), 0},
    {"bootstrap.pgvigil_restore.repository.path", K_ABSPATH, BR(repo.repo_path), 0},
    {"bootstrap.pgvigil_restore.repository.s3_endpoint", K_STR, BR(repo.s3_endpoint), 0},
    {"bootstrap.pgvigil_restore.repository.s3_bucket", K_STR, BR(repo.s3_bucket), 0},
    {"bootstrap.pgvigil_restore.repository.s3_region", K_STR, BR(repo.s3_region), 0},
    {"bootstrap.pgvigil_restore.repository.s3_uri_style", K_STR, BR(repo.s3_uri_style), 0},
    {"bootstrap.pgvigil_restore.repository.s3_key", K_STR, BR(repo.s3_key), 0},
    {"bootstrap.pgvigil_restore.repository.s3_secret", K_STR, BR(repo.s3_secret), 0},
    {"bootstrap.pgvigil_restore.repository.s3_part_size", K_INT64, BR(repo.s3_part_size), 0},
    {"bootstrap.pgvigil_restore.encryption", K_STR, BR(repo.encryption), 0},
    {"bootstrap.pgvigil_restore.encryption_key_file", K_ABSPATH, BR(repo.encryption_key_file), 0},
    {"vip", K_SECTION, 0, 0},
    {"vip.address", K_STR, C(vip.address), 0},
    {"vip.interface", K_STR, C(vip.interface), 0},
    {"vip.arp_count", K_INT, C(vip.arp_count), 0},
    {"backup", K_SECTION, 0, 0},
    {"backup.repository", K_SECTION, 0, 0},
    {"backup.repository.type", K_STR, C(backup.repo_type), 0},
    {"backup.repository.path", K_ABSPATH, C(backup.repo_path), 0},
    {"backup.repository.s3_endpoint", K_STR, C(backup.s3_endpoint), 0},
    {"backup.repository.s3_bucket", K_STR, C(backup.s3_bucket), 0},
    {"backup.repository.s3_region", K_STR, C(backup.s3_region), 0},
    {"backup.repository.s3_uri_style", K_STR, C(backup.s3_uri_style), 0},
    {"backup.repository.s3_key", K_STR, C(backup.s3_key), 0},
    {"backup.repository.s3_secret", K_STR, C(backup.s3_secret), 0},
    {"backup.repository.s3_part_size", K_INT64, C(backup.s3_part_size), 0},
    {"backup.compression", K_STR, C(backup.compression), 0},
    {"backup.compression_level", K_INT, C(backup.compression_level), 0},
    {"backup.archive", K_BOOL, C(backup.archive), 0},
    {"backup.archive_workers", K_INT, C(backup.archive_workers), 0},
    {"backup.prefetch", K_INT, C(backup.prefetch), 0},
    {"backup.retention_full", K_INT, C(backup.retention_full), 0},
    {"backup.retention_days", K_INT, C(backup.retention_days), 0},
    {"backup.schedule", K_STR, C(backup.schedule), 0},
    {"backup.encryption", K_STR, C(backup.encryption), 0},
    {"backup.encryption_key_file", K_ABSPATH, C(backup.encryption_key_file), 0},
    {"dns", K_SECTION, 0, 0},
    {"dns.server", K_ADDR, C(dns.server), 0},
    {"dns.zone", K_STR, C(dns.zone), 0},
    {"dns.record", K_STR, C(dns.record), 0},
    {"dns.address", K_STR, C(dns.address), 0},
    {"dns.ttl", K_INT, C(dns.ttl), 0},
    {"dns.tsig_key_name", K_STR, C(dns.tsig_key_name), 0},
    {"dns.tsig_secret", K_STR, C(dns.tsig_secret), 0},
    {"dns.tsig_algorithm", K_STR, C(dns.tsig_algorithm), 0},
    {"dns.timeout", K_INT, C(dns.timeout), 0},
    {"notify", K_SECTION, 0, 0},
    {"notify.webhook", K_SECTION, 0, 0},
    {"notify.webhook.url", K_STR, C(notify.webhook_url), 0},
    {"notify.webhook.secret", K_STR, C(notify.webhook_secret), 0},
    {"notify.pushover", K_SECTION, 0, 0},
    {"notify.pushover.url", K_STR, C(notify.pushover_url), 0},
    {"notify.pushover.token", K_STR, C(notify.pushover_token), 0},
    {"notify.pushover.user", K_STR, C(notify.pushover_user), 0},
    {"notify.command", K_STR, C(notify.command), 0},
    {"notify.lag_threshold", K_INT64, C(notify.lag_threshold), 0},
    {"notify.max_attempts", K_INT, C(notify.max_attempts), 0},
    {"notify.timeout", K_INT, C(notify.timeout), 0},
    {"proxy", K_SECTION, 0, 0},
    {"proxy.admin_listen", K_ADDR, C(proxy.admin_listen), 0},
    {"proxy.workers", K_INT, C(proxy.workers), 0},
    {"proxy.connect_wait", K_INT, C(proxy.connect_wait), 0},
    {"proxy.connect_timeout", K_INT, C(proxy.connect_timeout), 0},
    {"proxy.max_replica_lag", K_INT64, C(proxy.max_replica_lag), 0},
    {"proxy.backend_user_timeout", K_INT, C(proxy.backend_user_timeout), 0},
    {"proxy.routes", K_ROUTES, 0, 0},
};

typedef struct Loader {
    const char *file;
    yaml_document_t doc;
    Config *cfg;
    char *etcd_host;                /* etcd3.host, used when etcd3.hosts is absent */
    int lines[ARRAY_LEN(keys)];     /* line of each key seen, 0 = absent */
    int merge_depth, merges;        /* bounds on "<<" merge keys */
    Err *err;
} Loader;

bool config_parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    if (!s)
        return false;
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

bool config_parse_int64(const char *s, int64_t *out)
{
    if (!s || !(isdigit((unsigned char)s[0]) || s[0] == '-' || s[0] == '+'))
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || !isdigit((unsigned char)end[-1]))
        return false;
    *out = (int64_t)v;
    return true;
}

bool config_parse_seconds(const char *s, double *out)
{
    if (!s || !(isdigit((unsigned char)s[0]) || s[0] == '.' || s[0] == '+'))
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v))
        return false;
    *out = v;
    return true;
}

bool config_split_hostport(const char *s, char **host, int *port, Err *err)
{
    if (host)
        *host = NULL;
    if (str_empty(s)) {
        err_set(err, "empty address: expected host:port");
        return false;
    }
    const char *h = s, *colon;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') {
            err_set(err, "invalid address \"%s\": expected [address]:port", s);
            return false;
        }
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            err_set(err, "invalid address \"%s\": expected host:port", s);
            return false;
        }
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0) {
        err_set(err, "invalid address \"%s\": the host is empty", s);
        return false;
    }
    const char *p = colon + 1;
    size_t plen = strlen(p);
    long v = 0;
    bool digits = plen > 0 && plen <= 5;
    for (size_t i = 0; digits && i < plen; i++) {
        digits = isdigit((unsigned char)p[i]);
        v = v * 10 + (p[i] - '0');
    }
    if (!digits || v < 1 || v > 65535) {
        err_set(err, "invalid port in \"%s\" (expected 1..65535)", s);
        return false;
    }
    if (host) {
        *host = xmalloc(hlen + 1);
        memcpy(*host, h, hlen);
        (*host)[hlen] = '\0';
    }
    if (port)
        *port = (int)v;
    return true;
}

/* ---- errors ---- */

static int node_line(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

/* Copy user text for a message: one line, bounded, cut on a UTF-8 boundary. */
static void one_line(const char *s, char *buf, size_t sz, size_t max)
{
    size_t n = strlen(s);
    bool cut = n > max;
    if (cut) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    if (n + 4 > sz)
        n = sz > 4 ? sz - 4 : 0;
    size_t i = 0;
    for (; i < n; i++)
        buf[i] = iscntrl((unsigned char)s[i]) ? ' ' : s[i];
    buf[i] = '\0';
    if (cut)
        str_copy(buf + i, sz - i, "...");
}

static bool fail_at(Loader *ld, int line, const char *key, const char *fmt, ...) PRINTF_LIKE(4, 5);

static bool fail_at(Loader *ld, int line, const char *key, const char *fmt, ...)
{
    char msg[400], k[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    one_line(key, k, sizeof(k), 120);
    if (line > 0)
        err_set(ld->err, "%s:%d: %s: %s", ld->file, line, k, msg);
    else
        err_set(ld->err, "%s: %s: %s", ld->file, k, msg);
    return false;
}

static const char *scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = scalar(n);
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static void describe(const yaml_node_t *n, char *buf, size_t sz)
{
    if (n->type == YAML_MAPPING_NODE) {
        str_copy(buf, sz, "a mapping");
    } else if (n->type == YAML_SEQUENCE_NODE) {
        str_copy(buf, sz, "a list");
    } else if (is_null(n)) {
        str_copy(buf, sz, "null");
    } else {
        char t[64];
        one_line(scalar(n), t, sizeof(t), 40);
        str_fmt(buf, sz, "\"%s\"", t);
    }
}

static bool type_error(Loader *ld, int line, const char *key, const char *expected, const yaml_node_t *got)
{
    char desc[80];
    describe(got, desc, sizeof(desc));
    return fail_at(ld, line, key, "expected %s, got %s", expected, desc);
}

/* The text of a scalar that is not null; anything else is a type error. */
static bool get_text(Loader *ld, int line, const char *key, const char *expected, const yaml_node_t *v,
                     const char **out)
{
    if (v->type != YAML_SCALAR_NODE || is_null(v))
        return type_error(ld, line, key, expected, v);
    if (strlen(scalar(v)) != v->data.scalar.length)
        return fail_at(ld, line, key, "contains a NUL character");
    *out = scalar(v);
    return true;
}

/* ---- values ---- */

static void set_str(char **field, const char *s)
{
    char *copy = str_dup(s);
    free(*field);
    *field = copy;
}

static void free_strv(char **v, int n)
{
    if (!v)
        return;
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* An etcd host with the default port added when it has none. Caller frees. */
static char *etcd_host_with_port(const char *s)
{
    const char *after = s[0] == '[' && strchr(s, ']') ? strchr(s, ']') : s;
    if (strchr(after, ':'))
        return str_dup(s);
    return str_printf("%s:%s", s, ETCD_DEFAULT_PORT);
}

static bool check_etcd_host(Loader *ld, int line, const char *key, const char *host)
{
    Err e;
    if (strstr(host, "://"))
        return fail_at(ld, line, key, "expected host:port, got the URL \"%s\" (set the scheme with etcd3.protocol)",
                       host);
    if (!config_split_hostport(host, NULL, NULL, &e))
        return fail_at(ld, line, key, "%s", e.msg);
    return true;
}

/* Append one host (trimmed; empty ones skipped) to a NULL-terminated growing array. */
static bool add_etcd_host(Loader *ld, int line, const char *key, const char *text, size_t len,
                          char ***hosts, int *n)
{
    while (len > 0 && isspace((unsigned char)*text)) {
        text++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)text[len - 1]))
        len--;
    if (len == 0)
        return true;
    char *raw = xmalloc(len + 1);
    memcpy(raw, text, len);
    raw[len] = '\0';
    char *host = etcd_host_with_port(raw);
    free(raw);
    if (!check_etcd_host(ld, line, key, host)) {
        free(host);
        return false;
    }
    *hosts = xrealloc(*hosts, (size_t)(*n + 2) * sizeof(char *));
    (*hosts)[(*n)++] = host;
    (*hosts)[*n] = NULL;
    return true;
}

static bool load_hosts(Loader *ld, const KeySpec *ks, int line, const char *key, const yaml_node_t *v)
{
    char **hosts = xcalloc(1, sizeof(char *));
    int n = 0;
    bool ok = true;
    if (v->type == YAML_SEQUENCE_NODE) {
        int i = 0;
        for (yaml_node_item_t *it = v->data.sequence.items.start; ok && it < v->data.sequence.items.top;
             it++, i++) {
            const yaml_node_t *e = yaml_document_get_node(&ld->doc, *it);
            char ekey[96];
            str_fmt(ekey, sizeof(ekey), "%s[%d]", key, i);
            const char *s;
            ok = get_text(ld, node_line(e), ekey, "a string", e, &s) &&
                 add_etcd_host(ld, node_line(e), ekey, s, strlen(s), &hosts, &n);
        }
    } else {
        const char *s;
        ok = get_text(ld, line, key, "a list or a string", v, &s);
        while (ok) {
            const char *comma = strchr(s, ',');
            size_t len = comma ? (size_t)(comma - s) : strlen(s);
            ok = add_etcd_host(ld, line, key, s, len, &hosts, &n);
            if (!comma)
                break;
            s = comma + 1;
        }
    }
    if (ok && n == 0)
        ok = fail_at(ld, line, key, "must name at least one host");
    if (!ok) {
        free_strv(hosts, n);
        return false;
    }
    char ***field = (char ***)(void *)((char *)ld->cfg + ks->off);
    int *count = (int *)(void *)((char *)ld->cfg + ks->off_n);
    free_strv(*field, *count);
    *field = hosts;
    *count = n;
    return true;
}

static bool load_lines(Loader *ld, const KeySpec *ks, int line, const char *key, const yaml_node_t *v)
{
    if (v->type != YAML_SEQUENCE_NODE)
        return type_error(ld, line, key, "a list of strings", v);
    size_t cap = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    char **lines = xcalloc(cap + 1, sizeof(char *));
    int n = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        const yaml_node_t *e = yaml_document_get_node(&ld->doc, *it);
        char ekey[96];
        str_fmt(ekey, sizeof(ekey), "%s[%d]", key, n);
        const char *s;
        if (!get_text(ld, node_line(e), ekey, "a string", e, &s)) {
            free_strv(lines, n);
            return false;
        }
        lines[n++] = str_dup(s);
    }
    char ***field = (char ***)(void *)((char *)ld->cfg + ks->off);
    int *count = (int *)(void *)((char *)ld->cfg + ks->off_n);
    free_strv(*field, *count);
    *field = lines;
    *count = n;
    return true;
}

#define MAX_MERGE_SOURCES 16

static bool is_merge_key(const yaml_node_t *k)
{
    return k->type == YAML_SCALAR_NODE && k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           strcmp(scalar(k), "<<") == 0;
}

/* YAML merge keys ("<<: *defaults"), which PyYAML and so Patroni accept: the mappings to load,
 * lowest precedence first. Aliases can make merges cyclic or exponential, hence the depth and
 * total limits. On success the caller loads maps[] and then decrements ld->merge_depth. */
static bool merge_sources(Loader *ld, const yaml_node_t *k, const yaml_node_t *v, const char *prefix,
                          const yaml_node_t **maps, int *n)
{
    char key[192];
    str_fmt(key, sizeof(key), "%s%s<<", prefix, prefix[0] ? "." : "");
    *n = 0;
    if (v->type == YAML_MAPPING_NODE) {
        maps[(*n)++] = v;
    } else if (v->type == YAML_SEQUENCE_NODE) {
        /* Earlier mappings in the list win, so they are loaded last. */
        for (yaml_node_item_t *it = v->data.sequence.items.top; it > v->data.sequence.items.start; it--) {
            const yaml_node_t *e = yaml_document_get_node(&ld->doc, it[-1]);
            if (e->type != YAML_MAPPING_NODE)
                return type_error(ld, node_line(e), key, "a mapping", e);
            if (*n == MAX_MERGE_SOURCES)
                return fail_at(ld, node_line(k), key, "more than %d mappings to merge", MAX_MERGE_SOURCES);
            maps[(*n)++] = e;
        }
    } else if (!is_null(v)) {
        return type_error(ld, node_line(k), key, "a mapping or a list of mappings", v);
    }
    ld->merges += *n;
    if (ld->merge_depth >= 8 || ld->merges > 1000)
        return fail_at(ld, node_line(k), key, "merge keys nested or repeated too much");
    ld->merge_depth++;
    return true;
}

/* Pairs of a mapping of scalars into l; a null value means "" when null_is_empty, else skip. */
static bool load_pairs(Loader *ld, const char *key, const yaml_node_t *map, KvList *l, bool null_is_empty)
{
    /* Merged pairs first, so that pairs written in the mapping itself override them. */
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = yaml_document_get_node(&ld->doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(&ld->doc, p->value);
        if (!is_merge_key(k))
            continue;
        const yaml_node_t *maps[MAX_MERGE_SOURCES];
        int n;
        if (!merge_sources(ld, k, v, key, maps, &n))
            return false;
        bool ok = true;
        for (int m = 0; ok && m < n; m++)
            ok = load_pairs(ld, key, maps[m], l, null_is_empty);
        ld->merge_depth--;
        if (!ok)
            return false;
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = yaml_document_get_node(&ld->doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(&ld->doc, p->value);
        const char *name, *val;
        if (is_merge_key(k))
            continue;
        if (!get_text(ld, node_line(k), key, "scalar keys", k, &name))
            return false;
        char ekey[192];
        str_fmt(ekey, sizeof(ekey), "%s.%s", key, name);
        if (is_null(v)) {
            if (null_is_empty)
                kvlist_set(l, name, "");
            continue;
        }
        if (!get_text(ld, node_line(k), ekey, "a scalar", v, &val))
            return false;
        kvlist_set(l, name, val);
    }
    return true;
}

static KvList *kv_field(Loader *ld, const KeySpec *ks)
{
    return (KvList *)(void *)((char *)ld->cfg + ks->off);
}

static bool load_kvmap(Loader *ld, const KeySpec *ks, int line, const char *key, const yaml_node_t *v)
{
    if (v->type != YAML_MAPPING_NODE)
        return type_error(ld, line, key, "a mapping", v);
    KvList l = {0};
    if (!load_pairs(ld, key, v, &l, false)) {
        kvlist_free(&l);
        return false;
    }
    kvlist_free(kv_field(ld, ks));
    *kv_field(ld, ks) = l;
    return true;
}

/* bootstrap.initdb: ["data-checksums", {encoding: UTF8}], or a plain mapping. */
static bool load_initdb(Loader *ld, const KeySpec *ks, int line, const char *key, const yaml_node_t *v)
{
    KvList l = {0};
    bool ok = true;
    if (v->type == YAML_MAPPING_NODE) {
        ok = load_pairs(ld, key, v, &l, true);
    } else if (v->type == YAML_SEQUENCE_NODE) {
        int i = 0;
        for (yaml_node_item_t *it = v->data.sequence.items.start; ok && it < v->data.sequence.items.top;
             it++, i++) {
            const yaml_node_t *e = yaml_document_get_node(&ld->doc, *it);
            char ekey[96];
            str_fmt(ekey, sizeof(ekey), "%s[%d]", key, i);
            const char *s;
            if (e->type == YAML_MAPPING_NODE)
                ok = load_pairs(ld, ekey, e, &l, true);
            else if ((ok = get_text(ld, node_line(e), ekey, "a string or a mapping", e, &s)))
                kvlist_set(&l, s, "");
        }
    } else {
        ok = type_error(ld, line, key, "a list", v);
    }
    /* data checksums: on by default (pg_initdb_options); {data-checksums: false} or
     * "no-data-checksums" turns them off */
    const char *dc = ok ? kvlist_get(&l, "data-checksums") : NULL;
    bool on = true;
    if (dc && !str_empty(dc) && !config_parse_bool(dc, &on))
        ok = fail_at(ld, line, key, "data-checksums: expected a boolean (true/false), got \"%s\"", dc);
    else if (ok && on && dc && kvlist_get(&l, "no-data-checksums"))
        ok = fail_at(ld, line, key, "data-checksums and no-data-checksums: choose one");
    if (!ok) {
        kvlist_free(&l);
        return false;
    }
    kvlist_free(kv_field(ld, ks));
    *kv_field(ld, ks) = l;
    return true;
}

bool config_aa_name_ok(const char *s)
{
    if (str_empty(s) || strlen(s) >= 64 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return false;
    return true;
}

/* One proxy route: {listen: "h:p", role: primary|replica, protocol: postgres|tcp,
 * name: x, target_port: n, fallback_primary: bool}. Unknown keys are errors: a typo in a route
 * would silently send traffic somewhere else. */
static bool load_route(Loader *ld, const char *key, const yaml_node_t *map, ProxyRoute *r)
{
    r->postgres = true;
    r->fallback_primary = true;
    r->role = ROUTE_PRIMARY;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = yaml_document_get_node(&ld->doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(&ld->doc, p->value);
        const char *name, *val;
        if (!get_text(ld, node_line(k), key, "scalar keys", k, &name))
            return false;
        char ekey[192];
        str_fmt(ekey, sizeof(ekey), "%s.%s", key, name);
        int line = node_line(k);
        if (!get_text(ld, line, ekey, "a scalar", v, &val))
            return false;
        Err e;
        int64_t n;
        bool b;
        if (strcmp(name, "name") == 0) {
            set_str(&r->name, val);
        } else if (strcmp(name, "listen") == 0) {
            if (!config_split_hostport(val, NULL, NULL, &e))
                return fail_at(ld, line, ekey, "%s", e.msg);
            set_str(&r->listen, val);
        } else if (strcmp(name, "role") == 0) {
            if (strcmp(val, "primary") == 0 || strcmp(val, "master") == 0 || strcmp(val, "read-write") == 0)
                r->role = ROUTE_PRIMARY;
            else if (strcmp(val, "replica") == 0 || strcmp(val, "read-only") == 0)
                r->role = ROUTE_REPLICA;
            else if (strcmp(val, "write_leader") == 0)
                r->role = ROUTE_WRITE_LEADER;
            else
                return fail_at(ld, line, ekey, "expected primary, replica or write_leader, got \"%s\"", val);
        } else if (strcmp(name, "location") == 0) {
            if (!config_aa_name_ok(val))
                return fail_at(ld, line, ekey, "expected a location name (letters, digits, '-', '_', '.'), got \"%s\"", val);
            set_str(&r->location, val);
        } else if (strcmp(name, "protocol") == 0) {
            if (strcmp(val, "postgres") == 0 || strcmp(val, "postgresql") == 0)
                r->postgres = true;
            else if (strcmp(val, "tcp") == 0)
                r->postgres = false;
            else
                return fail_at(ld, line, ekey, "expected postgres or tcp, got \"%s\"", val);
        } else if (strcmp(name, "target_port") == 0) {
            if (!config_parse_int64(val, &n) || n < 1 || n > 65535)
                return fail_at(ld, line, ekey, "expected a port (1..65535), got \"%s\"", val);
            r->target_port = (int)n;
        } else if (strcmp(name, "fallback_primary") == 0) {
            if (!config_parse_bool(val, &b))
                return type_error(ld, line, ekey, "a boolean (true/false, yes/no, on/off)", v);
            r->fallback_primary = b;
        } else {
            return fail_at(ld, line, ekey, "unknown route setting (expected name, listen, role, protocol, "
                                           "target_port, fallback_primary or location)");
        }
    }
    if (!r->listen)
        return fail_at(ld, node_line(map), key, "a route needs listen: host:port");
    if (r->location && r->role != ROUTE_WRITE_LEADER)
        return fail_at(ld, node_line(map), key, "location is a setting of write_leader routes only");
    if (!r->name) {
        const char *port = strrchr(r->listen, ':');
        r->name = str_printf("%s-%s", r->role == ROUTE_PRIMARY ? "primary" : r->role == ROUTE_REPLICA ? "replica" : "write_leader",
                             port ? port + 1 : "?");
    }
    return true;
}

static void free_routes(ProxyConfig *pc)
{
    for (int i = 0; i < pc->n_routes; i++) {
        free(pc->routes[i].name);
        free(pc->routes[i].listen);
        free(pc->routes[i].location);
    }
    free(pc->routes);
    pc->routes = NULL;
    pc->n_routes = 0;
}

static bool load_routes(Loader *ld, int line, const char *key, const yaml_node_t *v)
{
    if (v->type != YAML_SEQUENCE_NODE)
        return type_error(ld, line, key, "a list of routes", v);
    ProxyConfig *pc = &ld->cfg->proxy;
    free_routes(pc);
    size_t cap = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    pc->routes = xcalloc(cap + 1, sizeof(ProxyRoute));
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        const yaml_node_t *e = yaml_document_get_node(&ld->doc, *it);
        char ekey[96];
        str_fmt(ekey, sizeof(ekey), "%s[%d]", key, pc->n_routes);
        if (e->type != YAML_MAPPING_NODE)
            return type_error(ld, node_line(e), ekey, "a mapping (listen, role, ...)", e);
        ProxyRoute *r = &pc->routes[pc->n_routes++];
        if (!load_route(ld, ekey, e, r))
            return false;
        for (ProxyRoute *o = pc->routes; o < r; o++)
            if (strcmp(o->name, r->name) == 0 || strcmp(o->listen, r->listen) == 0)
                return fail_at(ld, node_line(e), ekey, "same %s as an earlier route (\"%s\")",
                               strcmp(o->name, r->name) == 0 ? "name" : "listen address",
                               strcmp(o->name, r->name) == 0 ? r->name : r->listen);
    }
    return true;
}

static bool load_mapping(Loader *ld, const yaml_node_t *map, const char *prefix);

/* bootstrap.dcs.slots, checked by the same rules as the etcd key's */
static bool load_slots(Loader *ld, int line, const char *key, const yaml_node_t *v)
{
    if (v->type != YAML_MAPPING_NODE)
        return type_error(ld, line, key, "a mapping of slot names", v);
    json_t *o = json_object();
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = yaml_document_get_node(&ld->doc, p->key);
        const yaml_node_t *spec = yaml_document_get_node(&ld->doc, p->value);
        if (!k || k->type != YAML_SCALAR_NODE)
            continue;
        json_t *js = json_object();
        if (spec && spec->type == YAML_MAPPING_NODE) {
            for (yaml_node_pair_t *q = spec->data.mapping.pairs.start; q < spec->data.mapping.pairs.top; q++) {
                const yaml_node_t *qk = yaml_document_get_node(&ld->doc, q->key);
                const yaml_node_t *qv = yaml_document_get_node(&ld->doc, q->value);
                if (qk && qv && qk->type == YAML_SCALAR_NODE && qv->type == YAML_SCALAR_NODE)
                    json_object_set_new(js, scalar(qk), json_string(scalar(qv)));
            }
        }
        json_object_set_new(o, scalar(k), js);
    }
    DynConfig *dc = &ld->cfg->bootstrap_dcs;
    free_strv(dc->slots, dc->n_slots);   /* a merge key may have set them already */
    Err e;
    bool ok = slots_from_json(o, &dc->slots, &dc->n_slots, &e);
    json_decref(o);
    return ok || fail_at(ld, line, key, "%s", e.msg);
}

static bool load_value(Loader *ld, const KeySpec *ks, int line, const yaml_node_t *v)
{
    const char *key = ks->path;
    char *field = (char *)ld->cfg + ks->off;
    const char *s;
    int64_t n;
    Err e;

    if (is_null(v))
        return true;    /* "key:" with no value keeps the default */
    switch (ks->kind) {
    case K_SECTION:
        if (v->type != YAML_MAPPING_NODE)
            return type_error(ld, line, key, "a mapping", v);
        return load_mapping(ld, v, key);
    case K_STR:
    case K_ABSPATH:
    case K_ADDR:
        if (!get_text(ld, line, key, "a string", v, &s))
            return false;
        if (ks->kind == K_ABSPATH && s[0] != '/')
            return fail_at(ld, line, key, "must be an absolute path, got \"%s\"", s);
        if (ks->kind == K_ADDR && !config_split_hostport(s, NULL, NULL, &e))
            return fail_at(ld, line, key, "%s", e.msg);
        set_str((char **)(void *)field, s);
        return true;
    case K_HOST: {
        if (!get_text(ld, line, key, "a string", v, &s))
            return false;
        char *host = etcd_host_with_port(s);
        if (!check_etcd_host(ld, line, key, host)) {
            free(host);
            return false;
        }
        free(ld->etcd_host);
        ld->etcd_host = host;
        return true;
    }
    case K_INT:
    case K_INT64:
        if (!get_text(ld, line, key, "an integer", v, &s))
            return false;
        if (!config_parse_int64(s, &n))
            return type_error(ld, line, key, "an integer", v);
        if (ks->kind == K_INT64) {
            *(int64_t *)(void *)field = n;
        } else {
            if (n < INT_MIN || n > INT_MAX)
                return fail_at(ld, line, key, "integer out of range: %s", s);
            *(int *)(void *)field = (int)n;
        }
        return true;
    case K_MS: {
        double sec;
        if (!get_text(ld, line, key, "a number of seconds", v, &s))
            return false;
        if (!config_parse_seconds(s, &sec))
            return type_error(ld, line, key, "a number of seconds", v);
        if (sec > INT_MAX / 1000)
            return fail_at(ld, line, key, "out of range: %s", s);
        *(int *)(void *)field = (int)(sec * 1000 + 0.5);
        return true;
    }
    case K_BOOL:
        if (!get_text(ld, line, key, "a boolean", v, &s))
            return false;
        if (!config_parse_bool(s, (bool *)(void *)field))
            return type_error(ld, line, key, "a boolean (true/false, yes/no, on/off)", v);
        return true;
    case K_HOSTS:
        return load_hosts(ld, ks, line, key, v);
    case K_LINES:
        return load_lines(ld, ks, line, key, v);
    case K_KVMAP:
        return load_kvmap(ld, ks, line, key, v);
    case K_INITDB:
        return load_initdb(ld, ks, line, key, v);
    case K_ROUTES:
        return load_routes(ld, line, key, v);
    case K_SLOTS:
        return load_slots(ld, line, key, v);
    }
    return true;
}

static int find_key(const char *path)
{
    for (size_t i = 0; i < ARRAY_LEN(keys); i++)
        if (strcmp(keys[i].path, path) == 0)
            return (int)i;
    return -1;
}

static bool load_mapping(Loader *ld, const yaml_node_t *map, const char *prefix)
{
    /* Merged keys first, so that keys written in the mapping itself override them. */
    for (int pass = 0; pass < 2; pass++) {
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
            const yaml_node_t *k = yaml_document_get_node(&ld->doc, p->key);
            const yaml_node_t *v = yaml_document_get_node(&ld->doc, p->value);
            if (!k || !v || k->type != YAML_SCALAR_NODE || strlen(scalar(k)) != k->data.scalar.length)
                continue;
            if (is_merge_key(k)) {
                if (pass == 0) {
                    const yaml_node_t *maps[MAX_MERGE_SOURCES];
                    int n;
                    if (!merge_sources(ld, k, v, prefix, maps, &n))
                        return false;
                    bool ok = true;
                    for (int m = 0; ok && m < n; m++)
                        ok = load_mapping(ld, maps[m], prefix);
                    ld->merge_depth--;
                    if (!ok)
                        return false;
                }
                continue;
            }
            if (pass == 0)
                continue;
            char path[256];
            if (!str_fmt(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "", scalar(k)))
                continue;   /* too long to be one of ours */
            int i = find_key(path);
            if (i < 0)
                continue;   /* keys we don't use are ignored (Patroni files carry many) */
            ld->lines[i] = node_line(k);
            if (!load_value(ld, &keys[i], node_line(k), v))
                return false;
        }
    }
    return true;
}

/* ---- file, defaults, validation ---- */

static char *read_file(const char *path, size_t *len, Err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(err, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_CONFIG_BYTES) {
                err_set(err, "%s: file too large (over %d bytes)", path, MAX_CONFIG_BYTES);
                goto fail;
            }
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                err_set(err, "cannot read %s: %s", path, strerror(errno));
                goto fail;
            }
            break;
        }
    }
    fclose(f);
    *len = n;
    return buf;
fail:
    fclose(f);
    free(buf);
    return NULL;
}

static int key_line(const Loader *ld, const char *path)
{
    int i = find_key(path);
    return i < 0 ? 0 : ld->lines[i];
}

static bool require(Loader *ld, const char *key, char *value)
{
    if (value == NULL) {
        err_set(ld->err, "%s: missing required key: %s", ld->file, key);
        return false;
    }
    if (value[0] == '\0')
        return fail_at(ld, key_line(ld, key), key, "must not be empty");
    return true;
}

static void default_str(char **field, const char *value)
{
    if (*field == NULL)
        *field = str_dup(value);
}

/* "service", "/service" and "/service/" all mean "/service/". */
static char *normalize_namespace(const char *ns)
{
    while (*ns == '/')
        ns++;
    size_t n = strlen(ns);
    while (n > 0 && ns[n - 1] == '/')
        n--;
    return n == 0 ? str_dup("/") : str_printf("/%.*s/", (int)n, ns);
}

typedef enum LoadMode { LOAD_NODE, LOAD_CLIENT, LOAD_PROXY } LoadMode;

static bool finish_sections(Loader *ld, LoadMode mode);

static bool finish(Loader *ld, LoadMode mode)
{
    Config *cfg = ld->cfg;
    default_str(&cfg->namespace_, "/service/");
    char *ns = normalize_namespace(cfg->namespace_);
    free(cfg->namespace_);
    cfg->namespace_ = ns;

    default_str(&cfg->log_level, "info");
    LogLevel lvl;
    if (!log_parse_level(cfg->log_level, &lvl))
        return fail_at(ld, key_line(ld, "log.level"), "log.level",
                       "expected debug, info, warning or error, got \"%s\"", cfg->log_level);

    if (!cfg->etcd_hosts) {
        cfg->etcd_hosts = xcalloc(2, sizeof(char *));
        cfg->etcd_hosts[0] = ld->etcd_host ? ld->etcd_host : str_dup("127.0.0.1:" ETCD_DEFAULT_PORT);
        ld->etcd_host = NULL;
        cfg->n_etcd_hosts = 1;
    }
    default_str(&cfg->etcd_protocol, "http");
    if (strcmp(cfg->etcd_protocol, "http") != 0 && strcmp(cfg->etcd_protocol, "https") != 0)
        return fail_at(ld, key_line(ld, "etcd3.protocol"), "etcd3.protocol", "expected http or https, got \"%s\"",
                       cfg->etcd_protocol);

    default_str(&cfg->restapi_listen, "127.0.0.1:8008");
    default_str(&cfg->restapi_connect_address, cfg->restapi_listen);
    default_str(&cfg->pg_listen, "127.0.0.1:5432");
    default_str(&cfg->pg_connect_address, cfg->pg_listen);
    default_str(&cfg->pg_bin_dir, "/usr/lib/postgresql/15/bin");
    default_str(&cfg->pg_run_as, "postgres");
    default_str(&cfg->rewind_method, "pgvigil");
    if (strcmp(cfg->rewind_method, "pgvigil") != 0 && strcmp(cfg->rewind_method, "pg_rewind") != 0)
        return fail_at(ld, key_line(ld, "postgresql.rewind_method"), "postgresql.rewind_method",
                       "expected pgvigil or pg_rewind, got \"%s\"", cfg->rewind_method);

    /* Patroni files often set the socket directory as a server parameter instead. */
    const char *sockets = kvlist_get(&cfg->pg_parameters, "unix_socket_directories");
    if (!cfg->pg_socket_dir && sockets) {
        while (isspace((unsigned char)*sockets))
            sockets++;
        size_t n = strcspn(sockets, ",");
        while (n > 0 && isspace((unsigned char)sockets[n - 1]))
            n--;
        if (n > 0)
            cfg->pg_socket_dir = str_printf("%.*s", (int)n, sockets);
    }
    default_str(&cfg->pg_socket_dir, "/tmp");

    default_str(&cfg->pg_superuser.username, "postgres");
    default_str(&cfg->pg_replication.username, "replicator");
    if (!cfg->pg_rewind.username && !cfg->pg_rewind.password) {
        cfg->pg_rewind.username = str_dup(cfg->pg_superuser.username);
        cfg->pg_rewind.password = str_dup(cfg->pg_superuser.password);
    }
    default_str(&cfg->pg_rewind.username, cfg->pg_superuser.username);

    if (cfg->tags.failover_priority < 0)
        return fail_at(ld, key_line(ld, "tags.failover_priority"), "tags.failover_priority",
                       "must not be negative, got %d", cfg->tags.failover_priority);

    Err e;
    int sc_line = key_line(ld, "bootstrap.dcs.standby_cluster");
    if (sc_line > 0) {
        /* checked as the etcd key will be: the same rules, one place */
        StandbyCluster *sc = &cfg->bootstrap_dcs.standby;
        if (sc->port == 0)
            sc->port = 5432;
        sc->present = true;
        json_t *j = standby_cluster_to_json(sc);
        StandbyCluster checked;
        bool ok = standby_cluster_from_json(j, &checked, &e);
        json_decref(j);
        if (!ok)
            return fail_at(ld, sc_line, "bootstrap.dcs.standby_cluster", "%s", e.msg);
        standby_cluster_free(&checked);
    }
    const char *bad = dynconfig_check(&cfg->bootstrap_dcs, &e);
    if (bad) {
        char path[96];
        str_fmt(path, sizeof(path), "bootstrap.dcs.%s", bad);
        int line = key_line(ld, path);
        if (line == 0 && strcmp(bad, "loop_wait") == 0)
            line = key_line(ld, "bootstrap.dcs.ttl");   /* loop_wait defaulted; ttl is too small */
        if (line == 0)
            line = key_line(ld, "bootstrap.dcs");
        return fail_at(ld, line, path, "%s", e.msg);
    }

    /* Last, so that a bad value on a known line is reported before an absent key. */
    if (!require(ld, "scope", cfg->scope))
        return false;
    if (mode == LOAD_NODE && (!require(ld, "name", cfg->name) || !require(ld, "postgresql.data_dir", cfg->pg_data_dir)))
        return false;
    return finish_sections(ld, mode);
}

bool config_has_repository(const BackupConfig *bc)
{
    return bc->repo_path != NULL || (bc->repo_type && strcmp(bc->repo_type, "s3") == 0);
}

static bool is_s3(const BackupConfig *bc)
{
    return bc->repo_type && strcmp(bc->repo_type, "s3") == 0;
}

/* a directory's canonical name when it exists, else the name without trailing slashes */
static void canonical_dir(const char *p, char *out, size_t sz)
{
    char buf[PATH_MAX];
    if (realpath(p, buf)) {
        str_copy(out, sz, buf);
        return;
    }
    str_copy(out, sz, p);
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/')
        out[--n] = '\0';
}

static bool same_endpoint(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    while (na > 0 && a[na - 1] == '/')
        na--;
    while (nb > 0 && b[nb - 1] == '/')
        nb--;
    return na == nb && strncasecmp(a, b, na) == 0;
}

bool config_same_repository(const BackupConfig *a, const BackupConfig *b)
{
    if (!config_has_repository(a) || !config_has_repository(b) || is_s3(a) != is_s3(b))
        return false;
    if (is_s3(a))
        return a->s3_endpoint && b->s3_endpoint && a->s3_bucket && b->s3_bucket &&
               same_endpoint(a->s3_endpoint, b->s3_endpoint) && strcmp(a->s3_bucket, b->s3_bucket) == 0;
    char ca[PATH_MAX], cb[PATH_MAX];
    canonical_dir(a->repo_path, ca, sizeof(ca));
    canonical_dir(b->repo_path, cb, sizeof(cb));
    return strcmp(ca, cb) == 0;
}

bool config_replica_method(const Config *cfg, const char *method)
{
    for (int i = 0; i < cfg->n_replica_methods; i++)
        if (strcmp(cfg->replica_methods[i], method) == 0)
            return true;
    return false;
}

bool config_bootstrap_restores(const Config *cfg)
{
    return cfg->bootstrap_method && strcmp(cfg->bootstrap_method, "pgvigil_restore") == 0;
}

/* AWS's bucket naming rules: 3 to 63 lower-case letters, digits, dots and hyphens, starting and
 * ending with a letter or digit (a name that also works in a host name). */
static bool s3_bucket_ok(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63 || b[0] == '.' || b[0] == '-' || b[n - 1] == '.' || b[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '.' || b[i] == '-'))
            return false;
    return true;
}

/* type s3: endpoint, bucket, credentials (the file's, else the environment's), region, URI
 * style and part size. The agent (LOAD_NODE) needs the credentials at load; a client command
 * needs them only when it opens the repository (repo_open names the key then), so that a
 * command that does not read the repository runs without them. */
static bool finish_s3(Loader *ld, BackupConfig *bc, const char *sec, bool need_credentials)
{
    char pre[80], k_type[96], k_path[96], k_endpoint[96], k_bucket[96], k_region[96], k_style[96], k_part[96];
    str_fmt(pre, sizeof(pre), "%s.repository.", sec);
    str_fmt(k_type, sizeof(k_type), "%stype", pre);
    str_fmt(k_path, sizeof(k_path), "%spath", pre);
    str_fmt(k_endpoint, sizeof(k_endpoint), "%ss3_endpoint", pre);
    str_fmt(k_bucket, sizeof(k_bucket), "%ss3_bucket", pre);
    str_fmt(k_region, sizeof(k_region), "%ss3_region", pre);
    str_fmt(k_style, sizeof(k_style), "%ss3_uri_style", pre);
    str_fmt(k_part, sizeof(k_part), "%ss3_part_size", pre);
    int type_line = key_line(ld, k_type);
    char key[96];
    if (bc->repo_path)
        return fail_at(ld, key_line(ld, k_path), k_path,
                       "only for type posix (an s3 repository is named by s3_endpoint and s3_bucket)");
    if (str_empty(bc->s3_endpoint))
        return fail_at(ld, bc->s3_endpoint ? key_line(ld, k_endpoint) : type_line,
                       k_endpoint, "required for an s3 repository (\"http://host:port\" or \"https://host\")");
    const char *e = bc->s3_endpoint;
    const char *host = strncmp(e, "http://", 7) == 0 ? e + 7 : strncmp(e, "https://", 8) == 0 ? e + 8 : NULL;
    size_t hl = host ? strcspn(host, "/") : 0;
    if (!host || hl == 0 || strspn(host + hl, "/") != strlen(host + hl) || strpbrk(host, "?#@ "))
        return fail_at(ld, key_line(ld, k_endpoint), k_endpoint,
                       "expected http://host[:port] or https://host[:port] without a path, got \"%s\"", e);
    if (str_empty(bc->s3_bucket))
        return fail_at(ld, bc->s3_bucket ? key_line(ld, k_bucket) : type_line,
                       k_bucket, "required for an s3 repository");
    if (!s3_bucket_ok(bc->s3_bucket))
        return fail_at(ld, key_line(ld, k_bucket), k_bucket,
                       "expected 3 to 63 lower-case letters, digits, '.' or '-', got \"%s\"", bc->s3_bucket);
    default_str(&bc->s3_region, "us-east-1");
    if (str_empty(bc->s3_region) || strpbrk(bc->s3_region, "/ "))
        return fail_at(ld, key_line(ld, k_region), k_region,
                       "expected a region name such as us-east-1, got \"%s\"", bc->s3_region);
    default_str(&bc->s3_uri_style, "path");
    if (strcmp(bc->s3_uri_style, "path") != 0 && strcmp(bc->s3_uri_style, "host") != 0)
        return fail_at(ld, key_line(ld, k_style), k_style,
                       "expected path or host, got \"%s\"", bc->s3_uri_style);
    if (strcmp(bc->s3_uri_style, "host") == 0 && strchr(bc->s3_bucket, '.') && strncmp(e, "https://", 8) == 0)
        return fail_at(ld, key_line(ld, k_style), k_style,
                       "host style with https needs a bucket name without dots (the certificate covers one "
                       "level), got \"%s\": use path", bc->s3_bucket);
    /* credentials: the file's, else the environment's; either way never in a message */
    static const struct { const char *name, *env; size_t off; } cred[] = {
        {"s3_key", "PGVIGIL_S3_KEY", offsetof(BackupConfig, s3_key)},
        {"s3_secret", "PGVIGIL_S3_SECRET", offsetof(BackupConfig, s3_secret)},
    };
    for (size_t i = 0; i < ARRAY_LEN(cred); i++) {
        char **field = (char **)(void *)((char *)bc + cred[i].off);
        str_fmt(key, sizeof(key), "%s%s", pre, cred[i].name);
        const char *env = getenv(cred[i].env);
        if (!*field && !str_empty(env))
            *field = str_dup(env);
        if (*field ? (*field)[0] == '\0' : need_credentials)
            return fail_at(ld, *field ? key_line(ld, key) : type_line, key,
                           "required for an s3 repository (or set %s in the environment)", cred[i].env);
    }
    if (key_line(ld, k_part) == 0)
        bc->s3_part_size = 16 * 1024 * 1024;
    if (bc->s3_part_size < 65536 || bc->s3_part_size > (int64_t)5 * 1024 * 1024 * 1024)
        return fail_at(ld, key_line(ld, k_part), k_part,
                       "expected 65536 to 5368709120 bytes, got %lld", (long long)bc->s3_part_size);
    return true;
}

/* backup.encryption (or sec's) and its key. The agent (LOAD_NODE) reads the key material at load, so that
 * a missing, open or short key stops it at start; a client command reads it only when it opens
 * the repository (repo_open), as with the S3 credentials. The key is never in a message. */
static bool finish_encryption(Loader *ld, BackupConfig *bc, const char *sec, bool need_key)
{
    char k_enc[96], k_file[96], k_path[96];
    str_fmt(k_enc, sizeof(k_enc), "%s.encryption", sec);
    str_fmt(k_file, sizeof(k_file), "%s.encryption_key_file", sec);
    str_fmt(k_path, sizeof(k_path), "%s.repository.path", sec);
    default_str(&bc->encryption, "none");
    int line = key_line(ld, k_enc);
    if (strcmp(bc->encryption, "none") != 0 && strcmp(bc->encryption, "aes-256-gcm") != 0)
        return fail_at(ld, line, k_enc, "expected none or aes-256-gcm, got \"%s\"", bc->encryption);
    if (strcmp(bc->encryption, "none") == 0) {
        if (bc->encryption_key_file)
            return fail_at(ld, key_line(ld, k_file), k_file, "set, but %s is none (set %s: aes-256-gcm to encrypt)",
                           k_enc, k_enc);
        return true;
    }
    if (!config_has_repository(bc))
        return fail_at(ld, line, k_path, "required when %s is set", k_enc);
    if (!need_key)
        return true;
    char source[4200];
    char *material = NULL;
    size_t n = 0;
    Err e = {{0}};
    if (!cipher_material_load(bc->encryption_key_file, &material, &n, source, sizeof(source), &e)) {
        int at = bc->encryption_key_file ? key_line(ld, k_file) : line;
        err_set(ld->err, "%s:%d: %s", ld->file, at, e.msg);
        return false;
    }
    cipher_material_free(material, n);
    return true;
}

/* postgresql.create_replica_methods: known names, once each; default basebackup */
static bool finish_replica_methods(Loader *ld, Config *cfg)
{
    const char *key = "postgresql.create_replica_methods";
    int line = key_line(ld, key);
    if (cfg->n_replica_methods == 0) {
        if (line > 0)
            return fail_at(ld, line, key, "must name at least one method (pgvigil, basebackup)");
        free_strv(cfg->replica_methods, 0);
        cfg->replica_methods = xcalloc(2, sizeof(char *));
        cfg->replica_methods[0] = str_dup("basebackup");
        cfg->n_replica_methods = 1;
        return true;
    }
    for (int i = 0; i < cfg->n_replica_methods; i++) {
        const char *m = cfg->replica_methods[i];
        char ekey[96];
        str_fmt(ekey, sizeof(ekey), "%s[%d]", key, i);
        if (strcmp(m, "pgvigil") != 0 && strcmp(m, "basebackup") != 0)
            return fail_at(ld, line, ekey, "expected pgvigil or basebackup, got \"%s\"", m);
        for (int j = 0; j < i; j++)
            if (strcmp(cfg->replica_methods[j], m) == 0)
                return fail_at(ld, line, ekey, "%s is named twice", m);
        if (strcmp(m, "pgvigil") == 0 && !config_has_repository(&cfg->backup))
            return fail_at(ld, line, ekey, "pgvigil restores from backup.repository, which is not set");
    }
    return true;
}

/* bootstrap.method, and with pgvigil_restore its section: a target, and a repository to restore
 * from that is not the node's own (the restored cluster archives and backs up into its own
 * backup.repository; two clusters with one system identifier never share a repository). The
 * S3 credentials and the encryption key of that repository are read when it is opened. */
static bool finish_bootstrap(Loader *ld, Config *cfg)
{
    default_str(&cfg->bootstrap_method, "initdb");
    if (strcmp(cfg->bootstrap_method, "initdb") != 0 && !config_bootstrap_restores(cfg))
        return fail_at(ld, key_line(ld, "bootstrap.method"), "bootstrap.method",
                       "expected initdb or pgvigil_restore, got \"%s\" (bootstrap commands of your own are not "
                       "supported)", cfg->bootstrap_method);
    if (!config_bootstrap_restores(cfg))
        return true;
    const char *sec = "bootstrap.pgvigil_restore";
    BootstrapRestore *br = &cfg->boot_restore;
    Lsn lsn;
    if (br->target_time && br->target_lsn)
        return fail_at(ld, key_line(ld, "bootstrap.pgvigil_restore.target_lsn"), "bootstrap.pgvigil_restore.target_lsn",
                       "give target_time or target_lsn, not both");
    if (br->target_lsn && !lsn_parse(br->target_lsn, &lsn))
        return fail_at(ld, key_line(ld, "bootstrap.pgvigil_restore.target_lsn"), "bootstrap.pgvigil_restore.target_lsn",
                       "expected an LSN such as 0/3000060, got \"%s\"", br->target_lsn);
    if (br->target_time) {
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        const char *rest = strptime(br->target_time, "%Y-%m-%d", &tm);
        if (!rest || (*rest && *rest != ' ' && *rest != 'T'))
            return fail_at(ld, key_line(ld, "bootstrap.pgvigil_restore.target_time"),
                           "bootstrap.pgvigil_restore.target_time",
                           "expected a time such as \"2026-12-05 02:03:00+00\", got \"%s\"", br->target_time);
    }
    BackupConfig *rc = &br->repo;
    default_str(&rc->repo_type, "posix");
    if (strcmp(rc->repo_type, "posix") != 0 && strcmp(rc->repo_type, "s3") != 0)
        return fail_at(ld, key_line(ld, "bootstrap.pgvigil_restore.repository.type"),
                       "bootstrap.pgvigil_restore.repository.type", "expected posix or s3, got \"%s\"", rc->repo_type);
    if (is_s3(rc) && !finish_s3(ld, rc, sec, false))
        return false;
    if (!config_has_repository(rc)) {
        int line = key_line(ld, "bootstrap.pgvigil_restore.repository");
        return fail_at(ld, line ? line : key_line(ld, "bootstrap.method"), "bootstrap.pgvigil_restore.repository.path",
                       "required with bootstrap.method pgvigil_restore: the repository to restore from");
    }
    if (!finish_encryption(ld, rc, sec, false))
        return false;
    if (config_same_repository(rc, &cfg->backup))
        return fail_at(ld, key_line(ld, "bootstrap.pgvigil_restore.repository"), "bootstrap.pgvigil_restore.repository",
                       "is this node's backup.repository: the restored cluster archives and backs up into "
                       "backup.repository, which must be a new one (restore from the old repository, write into another)");
    return true;
}

static bool positive(Loader *ld, const char *key, int v)
{
    return v > 0 || fail_at(ld, key_line(ld, key), key, "must be positive, got %d", v);
}

/* site: the peer needs its etcd; automatic site failover needs the peer and a witness. */
static bool finish_site(Loader *ld)
{
    SiteConfig *sc = &ld->cfg->site;
    if (sc->peer_scope && sc->n_peer_etcd_hosts == 0)
        return fail_at(ld, key_line(ld, "site.peer.scope"), "site.peer.etcd3.hosts",
                       "required when site.peer.scope is set");
    if (sc->witness_ttl == 0 && key_line(ld, "site.witness.ttl") == 0)
        sc->witness_ttl = 10;
    if (sc->witness_ttl < 2)
        return fail_at(ld, key_line(ld, "site.witness.ttl"), "site.witness.ttl", "must be at least 2 (seconds), got %d",
                       sc->witness_ttl);
    default_str(&sc->failover, "manual");
    sc->automatic = strcmp(sc->failover, "automatic") == 0;
    if (!sc->automatic && strcmp(sc->failover, "manual") != 0)
        return fail_at(ld, key_line(ld, "site.failover"), "site.failover",
                       "must be manual or automatic, got \"%s\"", sc->failover);
    if (sc->automatic && !sc->peer_scope)
        return fail_at(ld, key_line(ld, "site.failover"), "site.peer.scope", "required when site.failover is automatic");
    if (sc->automatic && sc->n_witness_etcd_hosts == 0)
        return fail_at(ld, key_line(ld, "site.failover"), "site.witness.etcd3.hosts",
                       "required when site.failover is automatic (a third site's etcd)");
    return true;
}

/* active_active: names that become etcd key parts, and the lease. */
static bool finish_aa(Loader *ld)
{
    AaConfig *aa = &ld->cfg->aa;
    if (aa->group && !config_aa_name_ok(aa->group))
        return fail_at(ld, key_line(ld, "active_active.group"), "active_active.group",
                       "expected a group name (letters, digits, '-', '_', '.'), got \"%s\"", aa->group);
    if (aa->location && !config_aa_name_ok(aa->location))
        return fail_at(ld, key_line(ld, "active_active.location"), "active_active.location",
                       "expected a location name (letters, digits, '-', '_', '.'), got \"%s\"", aa->location);
    if (!aa->group && (aa->location || key_line(ld, "active_active.ttl")))
        return fail_at(ld, key_line(ld, "active_active"), "active_active.group", "required in active_active");
    if (aa->ttl == 0 && key_line(ld, "active_active.ttl") == 0)
        aa->ttl = 5;
    if (aa->ttl < 2)
        return fail_at(ld, key_line(ld, "active_active.ttl"), "active_active.ttl", "must be at least 2 (seconds), got %d",
                       aa->ttl);
    return true;
}

/* vip, dns, notify (agent) and proxy: defaults, then the checks that need several keys. */
static bool finish_sections(Loader *ld, LoadMode mode)
{
    Config *cfg = ld->cfg;
    VipConfig *vip = &cfg->vip;
    if (vip->arp_count == 0 && key_line(ld, "vip.arp_count") == 0)
        vip->arp_count = 3;
    if (vip->arp_count < 0)
        return fail_at(ld, key_line(ld, "vip.arp_count"), "vip.arp_count", "must not be negative");
    if (vip->address && !vip->interface)
        return fail_at(ld, key_line(ld, "vip.address"), "vip.interface", "required when vip.address is set");

    if (!finish_site(ld) || !finish_aa(ld))
        return false;

    DnsConfig *dns = &cfg->dns;
    if (dns->ttl == 0 && key_line(ld, "dns.ttl") == 0)
        dns->ttl = 5;
    if (dns->timeout == 0)
        dns->timeout = 2;
    default_str(&dns->tsig_algorithm, "hmac-sha256");
    if (dns->server) {
        static const char *const need[] = {"dns.zone", "dns.record", "dns.tsig_key_name", "dns.tsig_secret"};
        char *vals[] = {dns->zone, dns->record, dns->tsig_key_name, dns->tsig_secret};
        for (size_t i = 0; i < ARRAY_LEN(need); i++)
            if (str_empty(vals[i]))
                return fail_at(ld, key_line(ld, "dns.server"), need[i], "required when dns.server is set");
        if (!dns->address) {
            char *host = NULL;
            if (config_split_hostport(cfg->pg_connect_address, &host, NULL, NULL))
                dns->address = host;
        }
        if (dns->ttl < 0 || !positive(ld, "dns.timeout", dns->timeout))
            return fail_at(ld, key_line(ld, "dns.ttl"), "dns.ttl", "must not be negative");
    }

    BackupConfig *bc = &cfg->backup;
    default_str(&bc->repo_type, "posix");
    if (strcmp(bc->repo_type, "posix") != 0 && strcmp(bc->repo_type, "s3") != 0)
        return fail_at(ld, key_line(ld, "backup.repository.type"), "backup.repository.type",
                       "expected posix or s3, got \"%s\"", bc->repo_type);
    if (strcmp(bc->repo_type, "s3") == 0 && !finish_s3(ld, bc, "backup", mode == LOAD_NODE))
        return false;
    default_str(&bc->compression, "zstd");
    CompressKind ck;
    if (!compress_kind_parse(bc->compression, &ck))
        return fail_at(ld, key_line(ld, "backup.compression"), "backup.compression",
                       "expected zstd, lz4, gzip or none, got \"%s\"", bc->compression);
    if (key_line(ld, "backup.compression_level") == 0)
        bc->compression_level = compress_default_level(ck);
    else if (!compress_level_ok(ck, bc->compression_level))
        return fail_at(ld, key_line(ld, "backup.compression_level"), "backup.compression_level",
                       "%d is out of range for %s", bc->compression_level, bc->compression);
    if (key_line(ld, "backup.archive") == 0)
        bc->archive = config_has_repository(bc);
    if (bc->archive_workers == 0 && key_line(ld, "backup.archive_workers") == 0)
        bc->archive_workers = 2;
    if (bc->archive_workers < 1 || bc->archive_workers > 32)
        return fail_at(ld, key_line(ld, "backup.archive_workers"), "backup.archive_workers",
                       "expected 1 to 32, got %d", bc->archive_workers);
    if (key_line(ld, "backup.prefetch") == 0)
        bc->prefetch = 8;
    if (bc->prefetch < 0 || bc->prefetch > 64)
        return fail_at(ld, key_line(ld, "backup.prefetch"), "backup.prefetch", "expected 0 to 64, got %d",
                       bc->prefetch);
    if (bc->retention_full < 0)
        return fail_at(ld, key_line(ld, "backup.retention_full"), "backup.retention_full", "must not be negative");
    if (bc->retention_days < 0)
        return fail_at(ld, key_line(ld, "backup.retention_days"), "backup.retention_days", "must not be negative");
    if (bc->schedule) {
        Schedule sched;
        Err se = {{0}};
        if (!schedule_parse(bc->schedule, &sched, &se))
            return fail_at(ld, key_line(ld, "backup.schedule"), "backup.schedule", "%s", se.msg);
        if (!config_has_repository(bc))
            return fail_at(ld, key_line(ld, "backup.schedule"), "backup.repository.path", "required when backup.schedule is set");
    }
    if (bc->archive && !config_has_repository(bc))
        return fail_at(ld, key_line(ld, "backup.archive"), "backup.repository.path", "required when backup.archive is on");
    if (!finish_encryption(ld, bc, "backup", mode == LOAD_NODE))
        return false;
    if (!finish_replica_methods(ld, cfg) || !finish_bootstrap(ld, cfg))
        return false;

    NotifyConfig *nc = &cfg->notify;
    default_str(&nc->pushover_url, "https://api.pushover.net/1/messages.json");
    if (nc->max_attempts == 0)
        nc->max_attempts = 6;
    if (nc->timeout == 0)
        nc->timeout = 5;
    if (!positive(ld, "notify.max_attempts", nc->max_attempts) || !positive(ld, "notify.timeout", nc->timeout))
        return false;
    if (nc->lag_threshold < 0)
        return fail_at(ld, key_line(ld, "notify.lag_threshold"), "notify.lag_threshold", "must not be negative");

    ProxyConfig *pc = &cfg->proxy;
    if (pc->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        pc->workers = n > 0 ? (int)(n > 64 ? 64 : n) : 1;
    }
    if (pc->connect_wait == 0 && key_line(ld, "proxy.connect_wait") == 0)
        pc->connect_wait = 30;
    if (pc->connect_timeout == 0)
        pc->connect_timeout = 3;
    if (pc->max_replica_lag == 0 && key_line(ld, "proxy.max_replica_lag") == 0)
        pc->max_replica_lag = 1048576;
    if (pc->backend_user_timeout == 0)
        pc->backend_user_timeout = 10;
    if (!positive(ld, "proxy.workers", pc->workers) || !positive(ld, "proxy.connect_timeout", pc->connect_timeout) ||
        !positive(ld, "proxy.backend_user_timeout", pc->backend_user_timeout))
        return false;
    if (pc->connect_wait < 0)
        return fail_at(ld, key_line(ld, "proxy.connect_wait"), "proxy.connect_wait", "must not be negative");
    if (pc->max_replica_lag < 0)
        return fail_at(ld, key_line(ld, "proxy.max_replica_lag"), "proxy.max_replica_lag", "must not be negative");
    if (mode == LOAD_PROXY && pc->n_routes == 0)
        return fail_at(ld, key_line(ld, "proxy"), "proxy.routes", "at least one route is required");
    for (int i = 0; mode == LOAD_PROXY && i < pc->n_routes; i++)
        if (pc->routes[i].role == ROUTE_WRITE_LEADER && cfg->site.peer_scope)
            return fail_at(ld, key_line(ld, "site.peer.scope"), "site.peer.scope",
                           "a proxy with write_leader routes serves one active-active group, not two sites");
    return true;
}

static void syntax_error(Loader *ld, const yaml_parser_t *p)
{
    const char *problem = p->problem ? p->problem : "unknown error";
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        err_set(ld->err, "%s: out of memory while parsing YAML", ld->file);
        break;
    case YAML_READER_ERROR:
        err_set(ld->err, "%s: YAML syntax error: %s at byte %zu", ld->file, problem, p->problem_offset);
        break;
    default:
        err_set(ld->err, "%s:%zu:%zu: YAML syntax error: %s", ld->file, p->problem_mark.line + 1,
                p->problem_mark.column + 1, problem);
        break;
    }
}

static Config *load(const char *path, LoadMode mode, Err *err)
{
    Err scratch;
    if (!err)
        err = &scratch;
    if (!path) {
        err_set(err, "no configuration file given");
        return NULL;
    }
    size_t len;
    char *text = read_file(path, &len, err);
    if (!text)
        return NULL;

    Loader ld;
    memset(&ld, 0, sizeof(ld));
    ld.file = path;
    ld.err = err;
    ld.cfg = xcalloc(1, sizeof(Config));
    ld.cfg->path = str_dup(path);
    dynconfig_defaults(&ld.cfg->bootstrap_dcs);
    ld.cfg->tags.failover_priority = 1;

    yaml_parser_t parser;
    bool ok = false;
    if (!yaml_parser_initialize(&parser)) {
        err_set(err, "%s: out of memory while parsing YAML", path);
        goto out_text;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &ld.doc)) {
        syntax_error(&ld, &parser);
        goto out_parser;
    }
    const yaml_node_t *root = yaml_document_get_root_node(&ld.doc);
    if (!root)
        err_set(err, "%s: the file is empty", path);
    else if (root->type != YAML_MAPPING_NODE)
        type_error(&ld, node_line(root), "(top level)", "a mapping of settings", root);
    else
        ok = load_mapping(&ld, root, "") && finish(&ld, mode);
    yaml_document_delete(&ld.doc);
out_parser:
    yaml_parser_delete(&parser);
out_text:
    free(text);
    free(ld.etcd_host);
    if (!ok) {
        config_free(ld.cfg);
        return NULL;
    }
    return ld.cfg;
}

Config *config_load(const char *path, Err *err)
{
    return load(path, LOAD_NODE, err);
}

Config *config_load_client(const char *path, Err *err)
{
    return load(path, LOAD_CLIENT, err);
}

Config *config_load_proxy(const char *path, Err *err)
{
    return load(path, LOAD_PROXY, err);
}

static void free_credentials(Credentials *c)
{
    free(c->username);
    free(c->password);
}

static void free_backup_config(BackupConfig *bc)
{
    free(bc->repo_type);
    free(bc->repo_path);
    free(bc->s3_endpoint);
    free(bc->s3_bucket);
    free(bc->s3_region);
    free(bc->s3_uri_style);
    free(bc->s3_key);
    if (bc->s3_secret) {
        memset(bc->s3_secret, 0, strlen(bc->s3_secret));
        free(bc->s3_secret);
    }
    free(bc->compression);
    free(bc->schedule);
    free(bc->encryption);
    free(bc->encryption_key_file);
}

void config_free(Config *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    free(cfg->scope);
    free(cfg->namespace_);
    free(cfg->name);
    free(cfg->log_level);
    free(cfg->pid_file);
    free_strv(cfg->etcd_hosts, cfg->n_etcd_hosts);
    free_strv(cfg->site.peer_etcd_hosts, cfg->site.n_peer_etcd_hosts);
    free(cfg->aa.group);
    free(cfg->aa.location);
    free(cfg->site.peer_scope);
    free(cfg->site.peer_namespace);
    free(cfg->site.failover);
    free_strv(cfg->site.witness_etcd_hosts, cfg->site.n_witness_etcd_hosts);
    free(cfg->site.witness_namespace);
    free(cfg->etcd_protocol);
    free(cfg->etcd_username);
    free(cfg->etcd_password);
    free(cfg->restapi_listen);
    free(cfg->restapi_connect_address);
    free_credentials(&cfg->restapi_auth);
    free(cfg->pg_listen);
    free(cfg->pg_connect_address);
    free(cfg->pg_data_dir);
    free(cfg->pg_bin_dir);
    free(cfg->pg_run_as);
    free(cfg->rewind_method);
    free(cfg->pg_socket_dir);
    free_credentials(&cfg->pg_superuser);
    free_credentials(&cfg->pg_replication);
    free_credentials(&cfg->pg_rewind);
    kvlist_free(&cfg->pg_parameters);
    free_strv(cfg->pg_hba, cfg->n_pg_hba);
    free(cfg->cb_on_start);
    free(cfg->cb_on_stop);
    free(cfg->cb_on_role_change);
    free(cfg->cb_on_restart);
    free(cfg->cb_on_reload);
    dynconfig_free(&cfg->bootstrap_dcs);
    kvlist_free(&cfg->initdb_options);
    free(cfg->vip.address);
    free(cfg->vip.interface);
    char **dns[] = {&cfg->dns.server, &cfg->dns.zone, &cfg->dns.record, &cfg->dns.address,
                    &cfg->dns.tsig_key_name, &cfg->dns.tsig_secret, &cfg->dns.tsig_algorithm};
    for (size_t i = 0; i < ARRAY_LEN(dns); i++)
        free(*dns[i]);
    char **nc[] = {&cfg->notify.webhook_url, &cfg->notify.webhook_secret, &cfg->notify.pushover_url,
                   &cfg->notify.pushover_token, &cfg->notify.pushover_user, &cfg->notify.command};
    for (size_t i = 0; i < ARRAY_LEN(nc); i++)
        free(*nc[i]);
    free_backup_config(&cfg->backup);
    free_strv(cfg->replica_methods, cfg->n_replica_methods);
    free(cfg->bootstrap_method);
    free(cfg->boot_restore.backup);
    free(cfg->boot_restore.target_time);
    free(cfg->boot_restore.target_lsn);
    free_backup_config(&cfg->boot_restore.repo);
    free(cfg->proxy.admin_listen);
    free_routes(&cfg->proxy);
    free(cfg);
}
