/* Shared plumbing of the operator commands: resolving -c/--dcs-url/--scope, opening etcd,
 * prompts, REST calls to members, and the pure table/JSON/diff formatters that the tests cover. */
#include "common/common.h"
#include "cli/cli_common.h"
#include "cli/cli.h"
#include "common/lsn.h"
#include "common/strbuf.h"

#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <unistd.h>

static void buf_repeat(StrBuf *b, char c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        strbuf_addc(b, c);
}

/* ------------------------------------------------------------------ errors and options */

void cli_error(const char *hint, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (hint)
        fprintf(stderr, "hint: %s\n", hint);
}

bool cli_conn_opt(CliConnOpts *o, int opt, const char *arg)
{
    switch (opt) {
    case 'c':
        o->config_path = arg;
        return true;
    case CLI_OPT_DCS_URL:
        o->dcs_url = arg;
        return true;
    case CLI_OPT_SCOPE:
        o->scope = arg;
        return true;
    case CLI_OPT_NAMESPACE:
        o->namespace_ = arg;
        return true;
    default:
        return false;
    }
}

int cli_bad_option(const char *cmd, int opt, char **argv)
{
    char hint[128];
    str_fmt(hint, sizeof(hint), "run 'pgvigil %s --help' for its options", cmd);
    /* getopt leaves the offending word at argv[optind - 1] for long options */
    const char *word = optind > 0 ? argv[optind - 1] : "?";
    if (opt == ':') {
        if (optopt && optopt < 0x100 && word[0] == '-' && word[1] != '-')
            cli_error(hint, "option -%c needs an argument", optopt);
        else
            cli_error(hint, "option %s needs an argument", word);
    } else if (optopt && optopt < 0x100) {
        cli_error(hint, "unknown option -%c", optopt);
    } else {
        cli_error(hint, "unknown option %s", word);
    }
    return EXIT_USAGE;
}

bool cli_parse_int(const char *s, int min, int max, int *out)
{
    if (str_empty(s))
        return false;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (*p - '0');
        if (v > max)
            return false;
    }
    if (v < min)
        return false;
    *out = (int)v;
    return true;
}

int cli_confirm(const char *question)
{
    if (!isatty(STDIN_FILENO))
        return -1;
    printf("%s [y/N] ", question);
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof(line), stdin))
        return 0;
    line[strcspn(line, "\r\n")] = '\0';
    return strcasecmp(line, "y") == 0 || strcasecmp(line, "yes") == 0 ? 1 : 0;
}

/* ------------------------------------------------------------------ opening the cluster */

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return str_empty(v) ? NULL : v;
}

void cli_strv_free(char **v, int n)
{
    if (!v)
        return;
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* One endpoint of --dcs-url: strip scheme, credentials and path; add the default port. */
static char *dcs_url_entry(const char *s, size_t len, char **user, char **password, Err *err)
{
    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    char *e = xmalloc(len + 1);
    memcpy(e, s, len);
    e[len] = '\0';
    char *p = e;
    const char *scheme = "";
    if (strncasecmp(p, "http://", 7) == 0) {
        p += 7;
    } else if (strncasecmp(p, "https://", 8) == 0) {
        p += 8;
        scheme = "https://";   /* etcd.c takes full URLs for anything but plain http */
    } else if (strstr(p, "://")) {
        err_set(err, "--dcs-url: \"%s\": only http:// and https:// endpoints are supported", e);
        free(e);
        return NULL;
    }
    p[strcspn(p, "/?")] = '\0';
    char *at = strrchr(p, '@');
    if (at) {
        *at = '\0';
        char *colon = strchr(p, ':');
        if (!*user) {
            if (colon)
                *colon = '\0';
            *user = str_dup(p);
            *password = colon ? str_dup(colon + 1) : NULL;
        }
        p = at + 1;
    }
    if (!*p) {
        err_set(err, "--dcs-url: \"%s\": no host", e);
        free(e);
        return NULL;
    }
    /* a port is present when the last ':' comes after any IPv6 bracket */
    const char *colon = strrchr(p, ':');
    const char *bracket = strrchr(p, ']');
    char *out = (colon && (!bracket || colon > bracket)) ? str_printf("%s%s", scheme, p)
                                                         : str_printf("%s%s:2379", scheme, p);
    free(e);
    return out;
}

bool cli_parse_dcs_urls(const char *urls, char ***hosts, int *n_hosts, char **user,
                        char **password, Err *err)
{
    *hosts = NULL;
    *n_hosts = 0;
    *user = *password = NULL;
    if (str_empty(urls)) {
        err_set(err, "--dcs-url: empty");
        return false;
    }
    const char *p = urls;
    for (;;) {
        size_t len = strcspn(p, ",");
        char *h = dcs_url_entry(p, len, user, password, err);
        if (!h) {
            cli_strv_free(*hosts, *n_hosts);
            free(*user);
            free(*password);
            *hosts = NULL;
            *n_hosts = 0;
            *user = *password = NULL;
            return false;
        }
        *hosts = xrealloc(*hosts, sizeof(char *) * (size_t)(*n_hosts + 1));
        (*hosts)[(*n_hosts)++] = h;
        if (!p[len])
            break;
        p += len + 1;
    }
    return true;
}

static void cli_where_hint(const CliCtx *ctx, char *hint, size_t sz)
{
    if (ctx->cfg)
        str_fmt(hint, sz, "is etcd running? check --dcs-url or etcd3.hosts in %s",
                ctx->cfg->path ? ctx->cfg->path : ctx->where);
    else   /* no file involved: the endpoints came from --dcs-url or PGVIGIL_DCS_URL */
        str_fmt(hint, sz, "is etcd running? check --dcs-url (or PGVIGIL_DCS_URL)");
}

int cli_dcs_error(const CliCtx *ctx, const Err *err)
{
    char hint[600];
    cli_where_hint(ctx, hint, sizeof(hint));
    cli_error(hint, "%s", err->msg[0] ? err->msg : "etcd request failed");
    return EXIT_DCS;
}

int cli_open(const CliConnOpts *o, CliCtx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    cluster_init(&ctx->cluster);

    const char *cfg_path = o->config_path;
    const char *url = o->dcs_url;
    if (!cfg_path && !url) {
        cfg_path = env_nonempty("PGVIGIL_CONFIG");
        if (!cfg_path)
            url = env_nonempty("PGVIGIL_DCS_URL");
    }

    Err err = {{0}};
    if (cfg_path) {
        ctx->cfg = config_load_client(cfg_path, &err);
        if (!ctx->cfg) {
            cli_error(NULL, "%s", err.msg);
            cli_close(ctx);
            return EXIT_CONFIG;
        }
        ctx->where = str_dup(cfg_path);
    } else {
        ctx->where = str_dup("--dcs-url");
    }

    const char *scope = o->scope;
    if (o->aa_group) {
        /* an active-active group: --group, or the file's active_active.group */
        if (!scope && ctx->cfg)
            scope = ctx->cfg->aa.group;
        if (str_empty(scope)) {
            cli_error("use --group NAME, or -c FILE with active_active.group", "no active-active group given");
            cli_close(ctx);
            return EXIT_USAGE;
        }
    }
    if (!scope && ctx->cfg)
        scope = ctx->cfg->scope;
    if (!scope)
        scope = env_nonempty("PGVIGIL_SCOPE");
    if (str_empty(scope)) {
        cli_error("use -c FILE, or --dcs-url URL --scope NAME (or PGVIGIL_CONFIG, or PGVIGIL_DCS_URL "
                  "and PGVIGIL_SCOPE)",
                  "no cluster given");
        cli_close(ctx);
        return EXIT_USAGE;
    }
    ctx->scope = str_dup(scope);
    if (!ctx->cfg && !url)
        url = CLI_DEFAULT_DCS_URL;

    char **hosts = NULL;
    int n_hosts = 0;
    char *user = NULL, *password = NULL;
    if (url) {
        if (!cli_parse_dcs_urls(url, &hosts, &n_hosts, &user, &password, &err)) {
            cli_error("e.g. --dcs-url http://127.0.0.1:2379,http://10.0.0.2:2379", "%s", err.msg);
            cli_close(ctx);
            return EXIT_USAGE;
        }
    }
    if (!user && ctx->cfg && ctx->cfg->etcd_username) {
        user = str_dup(ctx->cfg->etcd_username);
        password = str_dup(ctx->cfg->etcd_password);
    }

    const char *ns = o->namespace_;
    if (!ns)
        ns = ctx->cfg && ctx->cfg->namespace_ ? ctx->cfg->namespace_ : "/service/";
    char *prefix = dcs_prefix(ns, ctx->scope);
    if (url)
        ctx->dcs = dcs_etcd_new(hosts, n_hosts, prefix, user, password, CLI_DCS_TIMEOUT_MS, &err);
    else
        ctx->dcs = dcs_etcd_new(ctx->cfg->etcd_hosts, ctx->cfg->n_etcd_hosts, prefix, user,
                                password, CLI_DCS_TIMEOUT_MS, &err);
    free(prefix);
    cli_strv_free(hosts, n_hosts);
    free(user);
    free(password);
    if (!ctx->dcs) {
        int rc = cli_dcs_error(ctx, &err);
        cli_close(ctx);
        return rc;
    }

    if (ctx->cfg && ctx->cfg->restapi_auth.username) {
        ctx->api_user = str_dup(ctx->cfg->restapi_auth.username);
        ctx->api_password = str_dup(ctx->cfg->restapi_auth.password);
    } else if (env_nonempty("PGVIGIL_RESTAPI_USER")) {
        ctx->api_user = str_dup(getenv("PGVIGIL_RESTAPI_USER"));
        ctx->api_password = str_dup(getenv("PGVIGIL_RESTAPI_PASSWORD"));
    }

    if (!cli_reload(ctx, &err)) {
        if (o->allow_unreachable) {
            str_copy(ctx->load_error, sizeof(ctx->load_error), err.msg);
            return EXIT_OK;
        }
        int rc = cli_dcs_error(ctx, &err);
        cli_close(ctx);
        return rc;
    }
    ctx->loaded = true;
    return EXIT_OK;
}

bool cli_reload(CliCtx *ctx, Err *err)
{
    Cluster fresh;
    cluster_init(&fresh);
    if (!ctx->dcs->ops->load(ctx->dcs, &fresh, err)) {
        cluster_free(&fresh);
        return false;
    }
    cluster_free(&ctx->cluster);
    ctx->cluster = fresh;
    return true;
}

void cli_close(CliCtx *ctx)
{
    dcs_free(ctx->dcs);
    ctx->dcs = NULL;
    config_free(ctx->cfg);
    ctx->cfg = NULL;
    cluster_free(&ctx->cluster);
    FREE_AND_NULL(ctx->scope);
    FREE_AND_NULL(ctx->where);
    FREE_AND_NULL(ctx->api_user);
    FREE_AND_NULL(ctx->api_password);
}

/* ------------------------------------------------------------------ REST calls */

static size_t http_sink(char *data, size_t size, size_t nmemb, void *userp)
{
    strbuf_add(userp, data, size * nmemb);
    return size * nmemb;
}

bool cli_http(const char *method, const char *url, const char *body, const char *user,
              const char *password, int timeout_ms, long *code, char **resp, Err *err)
{
    *code = 0;
    *resp = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        err_set(err, "%s %s: libcurl initialisation failed", method, url);
        return false;
    }
    CURL *h = curl_easy_init();
    if (!h) {
        curl_global_cleanup();
        err_set(err, "%s %s: libcurl initialisation failed", method, url);
        return false;
    }
    StrBuf out = {0};
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    char *userpwd = NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROXY, "");   /* like etcd.c: never via http_proxy from the env */
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
    }
    if (user) {
        userpwd = str_printf("%s:%s", user, password ? password : "");
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERPWD, userpwd);
    }
    CURLcode rc = curl_easy_perform(h);
    bool ok = rc == CURLE_OK;
    if (ok)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, code);
    else
        err_set(err, "%s %s: %s", method, url, curl_easy_strerror(rc));
    curl_easy_cleanup(h);
    curl_slist_free_all(headers);
    if (userpwd) {
        memset(userpwd, 0, strlen(userpwd));
        free(userpwd);
    }
    curl_global_cleanup();
    if (ok)
        *resp = strbuf_take(&out);
    else
        free(out.s);
    return ok;
}

/* ------------------------------------------------------------------ pure helpers */

char *cli_api_base(const char *api_url)
{
    char *s = str_dup(api_url ? api_url : "");
    size_t n = strlen(s);
    while (n && s[n - 1] == '/')
        s[--n] = '\0';
    static const char suffix[] = "/patroni";
    size_t sl = sizeof(suffix) - 1;
    if (n >= sl && strcmp(s + n - sl, suffix) == 0) {
        n -= sl;
        s[n] = '\0';
    }
    while (n && s[n - 1] == '/')
        s[--n] = '\0';
    return s;
}

static bool is_leader(const Cluster *c, const Member *m)
{
    return c->leader[0] && strcmp(c->leader, m->name) == 0;
}

const char *cli_member_state(const Cluster *c, const Member *m)
{
    /* like patronictl: a running replica that streams from the primary shows "streaming" (and a
     * standby cluster's leader, from its source) */
    bool standby_leader = strcmp(m->role, "standby_leader") == 0;
    if ((strcmp(m->name, c->leader) != 0 || standby_leader) && strcmp(m->state, "running") == 0 &&
        strcmp(m->replication_state, "streaming") == 0)
        return "streaming";
    return m->state;
}

const char *cli_member_role(const Cluster *c, const Member *m)
{
    if (is_leader(c, m))
        return c->config.standby.present ? "Standby Leader" : "Leader";
    if (!m->role[0] || strcmp(m->role, "uninitialized") == 0)
        return "Uninitialized";
    if (strcmp(m->role, "rescued") == 0)
        return "Rescued";
    if (sync_has(&c->sync, m->name))
        return "Sync Standby";
    return "Replica";
}

/* Lag in tenths of a MB, rounded half up (no libm needed). */
static int64_t lag_tenths_mb(int64_t bytes)
{
    return (bytes / 1048576) * 10 + ((bytes % 1048576) * 10 + 524288) / 1048576;
}

int64_t cli_member_lag(const Cluster *c, const Member *m, char *buf, size_t sz)
{
    if (is_leader(c, m)) {
        str_copy(buf, sz, "");
        return -1;
    }
    const Member *l = c->leader[0] ? cluster_member(c, c->leader) : NULL;
    if (!l || l->xlog_location == LSN_INVALID || m->xlog_location == LSN_INVALID) {
        str_copy(buf, sz, "unknown");
        return -1;
    }
    int64_t lag = l->xlog_location > m->xlog_location ? (int64_t)(l->xlog_location - m->xlog_location) : 0;
    int64_t tenths = lag_tenths_mb(lag);
    str_fmt(buf, sz, "%lld.%lld", (long long)(tenths / 10), (long long)(tenths % 10));
    return lag;
}

void cli_member_tags(const Tags *t, char *buf, size_t sz)
{
    StrBuf b = {0};
    const char *sep = "";
    struct {
        bool on;
        const char *name;
    } flags[] = {
        {t->nofailover, "nofailover"},
        {t->noloadbalance, "noloadbalance"},
        {t->nosync, "nosync"},
        {t->clonefrom, "clonefrom"},
    };
    for (size_t i = 0; i < ARRAY_LEN(flags); i++) {
        if (flags[i].on) {
            strbuf_addf(&b, "%s%s: true", sep, flags[i].name);
            sep = ", ";
        }
    }
    if (t->failover_priority != 1)
        strbuf_addf(&b, "%sfailover_priority: %d", sep, t->failover_priority);
    char *s = strbuf_take(&b);
    str_copy(buf, sz, s);
    free(s);
}

char *cli_table(const char *title, const char *const *headers, const bool *right, int ncols,
                const char *const *cells, int nrows)
{
    size_t *w = xcalloc((size_t)ncols, sizeof(size_t));
    for (int j = 0; j < ncols; j++) {
        w[j] = strlen(headers[j]);
        for (int i = 0; i < nrows; i++) {
            const char *cell = cells[i * ncols + j];
            size_t l = cell ? strlen(cell) : 0;
            if (l > w[j])
                w[j] = l;
        }
    }
    StrBuf border = {0};
    strbuf_adds(&border, "+");
    for (int j = 0; j < ncols; j++) {
        buf_repeat(&border, '-', w[j] + 2);
        strbuf_adds(&border, "+");
    }
    char *line = strbuf_take(&border);

    StrBuf b = {0};
    if (title) {
        char *t = str_printf("+ %s ", title);
        size_t tl = strlen(t), ll = strlen(line);
        if (tl + 1 < ll) {
            strbuf_adds(&b, t);
            strbuf_adds(&b, line + tl);
        } else {
            strbuf_adds(&b, t);
            strbuf_adds(&b, "+");
        }
        strbuf_adds(&b, "\n");
        free(t);
    } else {
        strbuf_adds(&b, line);
        strbuf_adds(&b, "\n");
    }
    for (int i = -1; i < nrows; i++) {
        strbuf_adds(&b, "|");
        for (int j = 0; j < ncols; j++) {
            const char *cell = i < 0 ? headers[j] : cells[i * ncols + j];
            if (!cell)
                cell = "";
            size_t pad = w[j] - strlen(cell);
            strbuf_adds(&b, " ");
            if (right && right[j] && i >= 0)
                buf_repeat(&b, ' ', pad);
            strbuf_adds(&b, cell);
            if (!(right && right[j] && i >= 0))
                buf_repeat(&b, ' ', pad);
            strbuf_adds(&b, " |");
        }
        strbuf_adds(&b, "\n");
        if (i < 0) {
            strbuf_adds(&b, line);
            strbuf_adds(&b, "\n");
        }
    }
    if (nrows > 0) {
        strbuf_adds(&b, line);
        strbuf_adds(&b, "\n");
    }
    free(line);
    free(w);
    return strbuf_take(&b);
}

static int member_ptr_cmp(const void *a, const void *b)
{
    const Member *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* Members sorted by name (etcd returns key order already; sort anyway for stable output). */
static const Member **sorted_members(const Cluster *c)
{
    const Member **v = xcalloc((size_t)c->n_members + 1, sizeof(*v));
    for (int i = 0; i < c->n_members; i++)
        v[i] = &c->members[i];
    if (c->n_members > 1)
        qsort(v, (size_t)c->n_members, sizeof(*v), member_ptr_cmp);
    return v;
}

enum { MCOL_MEMBER, MCOL_HOST, MCOL_ROLE, MCOL_STATE, MCOL_TL, MCOL_LAG, MCOL_TAGS, MCOL_N };

char *cli_format_members(const Cluster *c, const char *scope)
{
    static const char *const headers[MCOL_N] = {"Member", "Host", "Role", "State", "TL",
                                                "Lag in MB", "Tags"};
    static const bool right[MCOL_N] = {false, false, false, false, true, true, false};
    int n = c->n_members;
    const Member **ms = sorted_members(c);
    char **cells = xcalloc((size_t)(n ? n : 1) * MCOL_N, sizeof(char *));
    for (int i = 0; i < n; i++) {
        const Member *m = ms[i];
        char host[256], lag[32], tags[256];
        cluster_member_host(m->conn_url, host, sizeof(host));
        cli_member_lag(c, m, lag, sizeof(lag));
        cli_member_tags(&m->tags, tags, sizeof(tags));
        char **row = cells + i * MCOL_N;
        row[MCOL_MEMBER] = str_dup(m->name);
        row[MCOL_HOST] = str_dup(host);
        row[MCOL_ROLE] = str_dup(cli_member_role(c, m));
        row[MCOL_STATE] = str_dup(cli_member_state(c, m));
        row[MCOL_TL] = m->timeline > 0 ? str_printf("%d", m->timeline) : str_dup("");
        row[MCOL_LAG] = str_dup(lag);
        row[MCOL_TAGS] = m->pending_restart && tags[0] ? str_printf("%s, pending restart", tags)
                         : m->pending_restart          ? str_dup("pending restart")
                                                       : str_dup(tags);
    }
    char *title = c->sysid[0] ? str_printf("Cluster: %s (%s)", scope, c->sysid)
                              : str_printf("Cluster: %s", scope);
    char *table = cli_table(title, headers, right, MCOL_N, (const char *const *)cells, n);
    StrBuf b = {0};
    strbuf_adds(&b, table);
    if (c->config.pause)
        strbuf_adds(&b, " Maintenance mode: on\n");
    if (c->config.standby.present) {
        const StandbyCluster *sc = &c->config.standby;
        if (sc->host)
            strbuf_addf(&b, " Standby cluster: following %s:%d%s%s\n", sc->host, sc->port,
                        sc->primary_slot_name ? " through slot " : "", sc->primary_slot_name ? sc->primary_slot_name : "");
        else
            strbuf_adds(&b, " Standby cluster: following its restore_command\n");
    }
    if (c->failover.present) {
        if (c->failover.leader[0] && c->failover.candidate[0])
            strbuf_addf(&b, " Switchover pending: %s -> %s\n", c->failover.leader, c->failover.candidate);
        else if (c->failover.leader[0])
            strbuf_addf(&b, " Switchover pending: from %s\n", c->failover.leader);
        else
            strbuf_addf(&b, " Failover pending: to %s\n", c->failover.candidate);
    }
    free(table);
    free(title);
    for (int i = 0; i < n * MCOL_N; i++)
        free(cells[i]);
    free(cells);
    free(ms);
    return strbuf_take(&b);
}

char *cli_members_json(const Cluster *c, const char *scope)
{
    json_t *arr = json_array();
    const Member **ms = sorted_members(c);
    for (int i = 0; i < c->n_members; i++) {
        const Member *m = ms[i];
        char host[256], lag[32];
        cluster_member_host(m->conn_url, host, sizeof(host));
        int64_t lag_bytes = cli_member_lag(c, m, lag, sizeof(lag));
        json_t *o = json_object();
        json_object_set_new(o, "Cluster", json_string(scope));
        json_object_set_new(o, "Member", json_string(m->name));
        json_object_set_new(o, "Host", json_string(host));
        json_object_set_new(o, "Role", json_string(cli_member_role(c, m)));
        json_object_set_new(o, "State", json_string(cli_member_state(c, m)));
        if (m->timeline > 0)
            json_object_set_new(o, "TL", json_integer(m->timeline));
        if (lag_bytes >= 0)
            json_object_set_new(o, "Lag in MB", json_real((double)lag_tenths_mb(lag_bytes) / 10.0));
        else if (lag[0])
            json_object_set_new(o, "Lag in MB", json_string(lag));
        json_t *tags = json_object();
        if (m->tags.nofailover)
            json_object_set_new(tags, "nofailover", json_true());
        if (m->tags.noloadbalance)
            json_object_set_new(tags, "noloadbalance", json_true());
        if (m->tags.nosync)
            json_object_set_new(tags, "nosync", json_true());
        if (m->tags.clonefrom)
            json_object_set_new(tags, "clonefrom", json_true());
        if (m->tags.failover_priority != 1)
            json_object_set_new(tags, "failover_priority", json_integer(m->tags.failover_priority));
        if (json_object_size(tags))
            json_object_set_new(o, "Tags", tags);
        else
            json_decref(tags);
        if (m->pending_restart)
            json_object_set_new(o, "Pending restart", json_string("*"));
        json_array_append_new(arr, o);
    }
    free(ms);
    char *s = json_dumps(arr, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(arr);
    /* json_dumps memory comes from jansson's allocator (malloc by default) */
    char *out = str_dup(s ? s : "[]");
    free(s);
    return out;
}

/* A history cell that may be a string, a number or absent. */
static char *json_cell(const json_t *v)
{
    if (!v || json_is_null(v))
        return str_dup("");
    if (json_is_string(v))
        return str_dup(json_string_value(v));
    if (json_is_integer(v))
        return str_printf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    char *out = str_dup(s ? s : "");
    free(s);
    return out;
}

static char *history_lsn(const json_t *v)
{
    char lsnbuf[LSN_BUFSZ];
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        return str_dup(lsn_format((Lsn)json_integer_value(v), lsnbuf));
    /* a real only when it is a whole number an LSN can hold (2^64 and above do not convert) */
    double d = json_is_real(v) ? json_real_value(v) : -1;
    if (d >= 0 && d < 18446744073709551616.0 && d == floor(d))
        return str_dup(lsn_format((Lsn)d, lsnbuf));
    return json_cell(v);
}

char *cli_format_history(const char *history_json, Err *err)
{
    if (str_empty(history_json))
        return str_dup("no failovers or switchovers yet\n");
    json_error_t jerr;
    json_t *arr = json_loads(history_json, 0, &jerr);
    if (!arr || !json_is_array(arr)) {
        err_set(err, "history key: %s", arr ? "not a JSON array" : jerr.text);
        json_decref(arr);
        return NULL;
    }
    size_t n = json_array_size(arr);
    enum { HCOL_N = 5 };
    static const char *const headers[HCOL_N] = {"TL", "LSN", "Reason", "Timestamp", "New Leader"};
    static const bool right[HCOL_N] = {true, true, false, false, false};
    char **cells = xcalloc((n ? n : 1) * HCOL_N, sizeof(char *));
    int rows = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);
        if (!json_is_array(e))
            continue;
        char **row = cells + rows * HCOL_N;
        row[0] = json_cell(json_array_get(e, 0));
        row[1] = history_lsn(json_array_get(e, 1));
        row[2] = json_cell(json_array_get(e, 2));
        row[3] = json_cell(json_array_get(e, 3));
        row[4] = json_cell(json_array_get(e, 4));
        rows++;
    }
    json_decref(arr);
    char *out = rows ? cli_table(NULL, headers, right, HCOL_N, (const char *const *)cells, rows)
                     : str_dup("no failovers or switchovers yet\n");
    for (int i = 0; i < rows * HCOL_N; i++)
        free(cells[i]);
    free(cells);
    return out;
}

char *cli_json_pretty(const char *json, Err *err)
{
    json_error_t jerr;
    json_t *v = json_loads(json ? json : "", JSON_DECODE_ANY, &jerr);
    if (!v) {
        err_set(err, "line %d: %s", jerr.line, jerr.text);
        return NULL;
    }
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(v);
    char *out = str_printf("%s\n", s ? s : "");
    free(s);
    return out;
}

/* Flatten an object into path -> printable leaf (strings unquoted, others as compact JSON). */
static void flatten(const json_t *v, const char *path, json_t *flat)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *child;
        json_object_foreach((json_t *)v, k, child) {
            char *p = path[0] ? str_printf("%s.%s", path, k) : str_dup(k);
            flatten(child, p, flat);
            free(p);
        }
        return;
    }
    if (!path[0])
        return;
    if (json_is_string(v)) {
        json_object_set_new(flat, path, json_string(json_string_value(v)));
    } else {
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        json_object_set_new(flat, path, json_string(s ? s : "null"));
        free(s);
    }
}

static json_t *flat_of(const char *json)
{
    json_t *flat = json_object();
    if (str_empty(json))
        return flat;
    json_t *v = json_loads(json, 0, NULL);
    if (v)
        flatten(v, "", flat);
    json_decref(v);
    return flat;
}

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *cli_config_diff(const char *old_json, const char *new_json, const char *fallback_json)
{
    json_t *fo = flat_of(old_json), *fn = flat_of(new_json), *fb = flat_of(fallback_json);
    size_t cap = json_object_size(fo) + json_object_size(fn);
    const char **keys = xcalloc(cap + 1, sizeof(char *));
    size_t nk = 0;
    const char *k;
    json_t *v;
    json_object_foreach(fo, k, v) keys[nk++] = k;
    json_object_foreach(fn, k, v) {
        if (!json_object_get(fo, k))
            keys[nk++] = k;
    }
    qsort(keys, nk, sizeof(char *), str_ptr_cmp);
    StrBuf b = {0};
    for (size_t i = 0; i < nk; i++) {
        const json_t *a = json_object_get(fo, keys[i]), *z = json_object_get(fn, keys[i]);
        const char *as = a ? json_string_value(a) : NULL, *zs = z ? json_string_value(z) : NULL;
        if (as && zs && strcmp(as, zs) == 0)
            continue;
        if (!as) {
            const json_t *d = json_object_get(fb, keys[i]);
            as = d ? json_string_value(d) : "(unset)";
        }
        strbuf_addf(&b, "%s: %s -> %s\n", keys[i], as, zs ? zs : "(removed)");
    }
    free(keys);
    json_decref(fo);
    json_decref(fn);
    json_decref(fb);
    return strbuf_take(&b);
}

int cli_parse_daemon_opts(int argc, char **argv, void (*usage)(FILE *out), const char *what, const char **path,
                          const char **level)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:l:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': *path = optarg; break;
        case 'l': *level = optarg; break;
        case 'h': usage(stdout); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (!*path) {
        char hint[96];
        str_fmt(hint, sizeof(hint), "pass the %s's YAML file with -c FILE", what);
        cli_error(hint, "no configuration file given");
        return EXIT_USAGE;
    }
    return -1;
}

int cli_parse_conn_only(const char *cmd, int argc, char **argv, void (*usage)(FILE *out), CliConnOpts *conn)
{
    static const struct option longopts[] = {
        CLI_CONN_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, CLI_CONN_SHORTOPTS, longopts, NULL)) != -1) {
        if (cli_conn_opt(conn, opt, optarg))
            continue;
        if (opt == 'h') {
            usage(stdout);
            return EXIT_OK;
        }
        return cli_bad_option(cmd, opt, argv);
    }
    if (optind < argc) {
        char hint[128];
        str_fmt(hint, sizeof(hint), "run 'pgvigil %s --help' for its options", cmd);
        cli_error(hint, "unexpected argument \"%s\"", argv[optind]);
        return EXIT_USAGE;
    }
    return -1;
}
