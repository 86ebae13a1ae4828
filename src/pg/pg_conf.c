/* The configuration files pgvigil owns in the data directory: postgresql.conf (initdb's file is
 * kept as postgresql.base.conf and included first), pg_hba.conf and standby.signal. */
#include "common/common.h"
#include "common/fileutil.h"
#include "common/lease_file.h"
#include "common/log.h"
#include "common/proc.h"
#include "pg/pg.h"

#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#define OWNED_MARKER "# written by pgvigil"

typedef struct Buf {
    char *s;
    size_t len, cap;
} Buf;

static void buf_add(Buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void buf_add(Buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->s = xrealloc(b->s, b->cap);
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* value as a PostgreSQL configuration string literal */
static void add_param(Buf *b, const char *key, const char *value)
{
    buf_add(b, "%s = '", key);
    for (const char *p = value; *p; p++) {
        if (*p == '\'')
            buf_add(b, "''");
        else if (*p == '\\')
            buf_add(b, "\\\\");
        else if (*p == '\n')
            continue;
        else
            buf_add(b, "%c", *p);
    }
    buf_add(b, "'\n");
}

/* conninfo values are single-quoted with backslash escapes */
static void add_conninfo_value(Buf *b, const char *key, const char *value)
{
    buf_add(b, "%s='", key);
    for (const char *p = value; *p; p++) {
        if (*p == '\'' || *p == '\\')
            buf_add(b, "\\");
        buf_add(b, "%c", *p);
    }
    buf_add(b, "' ");
}

char *pg_primary_conninfo(const Config *cfg, const PgConfSpec *spec)
{
    Buf ci = {0};
    char p[16];
    str_fmt(p, sizeof(p), "%d", spec->primary_port);
    add_conninfo_value(&ci, "host", spec->primary_host ? spec->primary_host : "");
    add_conninfo_value(&ci, "port", p);
    add_conninfo_value(&ci, "user", cfg->pg_replication.username);
    if (cfg->pg_replication.password)
        add_conninfo_value(&ci, "password", cfg->pg_replication.password);
    add_conninfo_value(&ci, "application_name", cfg->name);
    if (spec->from_source && spec->primary_host && strchr(spec->primary_host, ','))
        add_conninfo_value(&ci, "target_session_attrs", "primary");
    buf_add(&ci, "connect_timeout=2 keepalives_idle=2 keepalives_interval=1 keepalives_count=3");
    return ci.s;
}

static bool write_owned(const char *path, const Buf *b, Err *err)
{
    if (!file_write_atomic(path, b->s ? b->s : "", b->len, 0600, err))
        return false;
    return proc_chown_run_as(path, err);
}

/* Parameters pgvigil sets unless the user overrides them. */
static const struct {
    const char *key, *value;
} default_params[] = {
    {"wal_level", "replica"},
    {"hot_standby", "on"},
    {"max_wal_senders", "10"},
    {"max_replication_slots", "10"},
    {"wal_keep_size", "128MB"},
    {"wal_log_hints", "on"},          /* pg_rewind needs it (or checksums) */
    {"wal_receiver_status_interval", "1s"},
    {"wal_retrieve_retry_interval", "1s"}, /* re-connect fast after a leader change */
    {"recovery_target_timeline", "latest"},
    {"logging_collector", "off"},
};

static bool user_overrides(const Config *cfg, const KvList *dyn, const char *key)
{
    return kvlist_get(&cfg->pg_parameters, key) || (dyn && kvlist_get(dyn, key));
}

bool pg_guard_installed(const PgNode *pg)
{
    char path[4200];
    str_fmt(path, sizeof(path), "%s/../lib/%s.so", pg->cfg->pg_bin_dir, LEASE_GUARD_LIBRARY);
    return file_exists(path);
}

void pg_guard_lease_file(const PgNode *pg, char *buf, size_t sz)
{
    str_fmt(buf, sz, "%s/.pgvigil_lease.%d", pg->cfg->pg_socket_dir, pg->port);
}

bool pg_archive_module_installed(const PgNode *pg)
{
    char path[4200];
    str_fmt(path, sizeof(path), "%s/../lib/pgvigil_archive.so", pg->cfg->pg_bin_dir);
    return file_exists(path);
}

void pg_archive_socket(const PgNode *pg, char *buf, size_t sz)
{
    str_fmt(buf, sz, "%s/.pgvigil_archive.%d", pg->cfg->pg_socket_dir, pg->port);
}

/* The user's shared_preload_libraries (node YAML first, then the cluster's), with the guard's
 * module added when it is not listed. */
static void add_preload(Buf *b, const Config *cfg, const KvList *dyn)
{
    const char *user = kvlist_get(&cfg->pg_parameters, "shared_preload_libraries");
    if (!user && dyn)
        user = kvlist_get(dyn, "shared_preload_libraries");
    bool listed = false;
    for (const char *p = user; p && *p;) {
        p += strspn(p, " ,\t\"");
        size_t n = strcspn(p, " ,\t\"");
        if (n == strlen(LEASE_GUARD_LIBRARY) && strncmp(p, LEASE_GUARD_LIBRARY, n) == 0)
            listed = true;
        p += n;
    }
    char *value = str_empty(user) ? str_dup(LEASE_GUARD_LIBRARY)
                  : listed        ? str_dup(user)
                                  : str_printf("%s,%s", user, LEASE_GUARD_LIBRARY);
    add_param(b, "shared_preload_libraries", value);
    free(value);
}

/* a word for /bin/sh: as it is when it holds no special character, else single-quoted */
static void shell_word(char *out, size_t sz, const char *w)
{
    if (strspn(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:,=@") == strlen(w)) {
        str_copy(out, sz, w);
        return;
    }
    size_t k = 0;
    if (sz < 3) {
        if (sz)
            out[0] = '\0';
        return;
    }
    out[k++] = '\'';
    for (const char *p = w; *p && k + 6 < sz; p++) {
        if (*p == '\'') {
            memcpy(out + k, "'\\''", 4);
            k += 4;
        } else {
            out[k++] = *p;
        }
    }
    out[k++] = '\'';
    out[k] = '\0';
}

void pg_wal_fetch_command(const Config *cfg, bool bootstrap_repository, char *buf, size_t sz)
{
    char self[PATH_MAX], cfg_abs[PATH_MAX], qself[2 * PATH_MAX], qcfg[2 * PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        str_copy(self, sizeof(self), "pgvigil");
    else
        self[n] = '\0';
    if (!realpath(cfg->path, cfg_abs))
        str_copy(cfg_abs, sizeof(cfg_abs), cfg->path);
    shell_word(qself, sizeof(qself), self);
    shell_word(qcfg, sizeof(qcfg), cfg_abs);
    str_fmt(buf, sz, "%s wal-fetch -c %s%s %%f %%p", qself, qcfg, bootstrap_repository ? " --bootstrap-repository" : "");
}

bool pg_write_config(PgNode *pg, const PgConfSpec *spec, Err *err)
{
    const Config *cfg = pg->cfg;
    const char *dd = cfg->pg_data_dir;
    char conf[4096], base[4096], hba[4096], sig[4096];
    str_fmt(conf, sizeof(conf), "%s/postgresql.conf", dd);
    str_fmt(base, sizeof(base), "%s/postgresql.base.conf", dd);
    str_fmt(hba, sizeof(hba), "%s/pg_hba.conf", dd);
    str_fmt(sig, sizeof(sig), "%s/standby.signal", dd);

    /* keep initdb's file (once) as the base everything else overrides */
    if (!file_exists(base) && file_exists(conf)) {
        char *old = file_read_all(conf, NULL, err);
        if (!old)
            return false;
        bool ours = strncmp(old, OWNED_MARKER, strlen(OWNED_MARKER)) == 0;
        free(old);
        if (!ours && rename(conf, base) != 0) {
            err_set(err, "cannot rename %s to %s: %s", conf, base, strerror(errno));
            return false;
        }
    }
    if (!file_exists(base)) {
        Buf e = {0};
        buf_add(&e, "# base configuration (created by pgvigil)\n");
        if (!write_owned(base, &e, err)) {
            free(e.s);
            return false;
        }
        free(e.s);
    }

    Buf b = {0};
    buf_add(&b, OWNED_MARKER "; edit the cluster config (pgvigil edit-config) or the node's YAML instead\n");
    buf_add(&b, "include 'postgresql.base.conf'\n");
    char *hosts = NULL;
    int port = 0;
    Err e2;
    if (config_split_hostport(cfg->pg_listen, &hosts, &port, &e2)) {
        add_param(&b, "listen_addresses", hosts);
        free(hosts);
    }
    char portbuf[16];
    str_fmt(portbuf, sizeof(portbuf), "%d", pg->port);
    add_param(&b, "port", portbuf);
    add_param(&b, "unix_socket_directories", cfg->pg_socket_dir);
    add_param(&b, "cluster_name", cfg->name);
    for (size_t i = 0; i < ARRAY_LEN(default_params); i++)
        if (!user_overrides(cfg, spec->dyn_params, default_params[i].key))
            add_param(&b, default_params[i].key, default_params[i].value);
    /* with the guard, shared_preload_libraries is written once, merged, below */
    bool guard = pg_guard_installed(pg);
    if (spec->dyn_params)
        for (int i = 0; i < spec->dyn_params->n; i++)
            if (!kvlist_get(&cfg->pg_parameters, spec->dyn_params->items[i].key) &&
                !(guard && strcmp(spec->dyn_params->items[i].key, "shared_preload_libraries") == 0))
                add_param(&b, spec->dyn_params->items[i].key, spec->dyn_params->items[i].value);
    for (int i = 0; i < cfg->pg_parameters.n; i++)
        if (!(guard && strcmp(cfg->pg_parameters.items[i].key, "shared_preload_libraries") == 0))
            add_param(&b, cfg->pg_parameters.items[i].key, cfg->pg_parameters.items[i].value);
    if (cfg->backup.archive) {
        /* "always": a standby archives what it receives too (each node's agent stores it, and
         * finds it stored already when another node was first). With "on", a standby marks
         * what it streams as archived, so a segment the primary finished but had not archived
         * when it died would be archived by nobody: a gap after the failover. */
        if (!user_overrides(cfg, spec->dyn_params, "archive_mode"))
            add_param(&b, "archive_mode", "always");
        add_param(&b, "archive_library", "pgvigil_archive");
        char sock[4200];
        pg_archive_socket(pg, sock, sizeof(sock));
        add_param(&b, "pgvigil_archive.socket", sock);
    }
    if (cfg->aa.group) {
        /* an active-active node: its replicated DDL asks this agent for the group's DDL lock */
        if (!user_overrides(cfg, spec->dyn_params, "pgvigil_aa.agent_url"))
            add_param(&b, "pgvigil_aa.agent_url", cfg->restapi_connect_address ? cfg->restapi_connect_address
                                                                              : cfg->restapi_listen);
        if (cfg->restapi_auth.username && cfg->restapi_auth.password) {
            char *auth = str_printf("%s:%s", cfg->restapi_auth.username, cfg->restapi_auth.password);
            add_param(&b, "pgvigil_aa.agent_auth", auth);
            free(auth);
        }
    }
    if (guard) {
        char lease[4200];
        pg_guard_lease_file(pg, lease, sizeof(lease));
        add_preload(&b, cfg, spec->dyn_params);
        add_param(&b, LEASE_FILE_GUC, lease);
    }

    if (spec->replica) {
        if (!str_empty(spec->primary_host)) {
            char *ci = pg_primary_conninfo(cfg, spec);
            add_param(&b, "primary_conninfo", ci);
            free(ci);
        } else {
            add_param(&b, "primary_conninfo", "");
        }
        add_param(&b, "primary_slot_name", spec->slot_name ? spec->slot_name : "");
        add_param(&b, "synchronous_standby_names", spec->sync_names ? spec->sync_names : "");
        if (spec->restore_command) {
            add_param(&b, "restore_command", spec->restore_command);
        } else if ((spec->fetch_from_repository || config_replica_method(cfg, "pgvigil")) &&
                   config_has_repository(&cfg->backup) && !user_overrides(cfg, spec->dyn_params, "restore_command")) {
            char cmd[3 * PATH_MAX];
            pg_wal_fetch_command(cfg, false, cmd, sizeof(cmd));
            add_param(&b, "restore_command", cmd);
        }
        if (spec->min_apply_delay)
            add_param(&b, "recovery_min_apply_delay", spec->min_apply_delay);
    } else {
        add_param(&b, "primary_conninfo", "");
        add_param(&b, "primary_slot_name", "");
        add_param(&b, "synchronous_standby_names", spec->sync_names ? spec->sync_names : "");
    }
    if (spec->recovery) {
        buf_add(&b, "# recovery from the backup repository\n");
        for (int i = 0; i < spec->recovery->n; i++)
            add_param(&b, spec->recovery->items[i].key, spec->recovery->items[i].value);
    }
    bool ok = write_owned(conf, &b, err);
    free(b.s);
    if (!ok)
        return false;

    Buf h = {0};
    buf_add(&h, OWNED_MARKER "\n");
    if (cfg->n_pg_hba > 0) {
        for (int i = 0; i < cfg->n_pg_hba; i++)
            buf_add(&h, "%s\n", cfg->pg_hba[i]);
    } else {
        const char *method_su = cfg->pg_superuser.password ? "scram-sha-256" : "trust";
        const char *method_rep = cfg->pg_replication.password ? "scram-sha-256" : "trust";
        buf_add(&h, "local all all trust\n");
        buf_add(&h, "local replication all trust\n");
        buf_add(&h, "host replication %s 127.0.0.0/8 %s\n", cfg->pg_replication.username, method_rep);
        buf_add(&h, "host replication %s ::1/128 %s\n", cfg->pg_replication.username, method_rep);
        buf_add(&h, "host all all 127.0.0.0/8 %s\n", method_su);
        buf_add(&h, "host all all ::1/128 %s\n", method_su);
    }
    ok = write_owned(hba, &h, err);
    free(h.s);
    if (!ok)
        return false;

    if (spec->keep_signal) {
        /* pg_ctl promote removes it; removing it first makes the promotion fail */
    } else if (spec->replica) {
        Buf s = {0};
        if (!file_exists(sig) && !write_owned(sig, &s, err))
            return false;
    } else if (file_exists(sig) && unlink(sig) != 0) {
        err_set(err, "cannot remove %s: %s", sig, strerror(errno));
        return false;
    }
    return true;
}
