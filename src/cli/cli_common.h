/* Shared plumbing of the operator commands: connection options (-c FILE or --dcs-url/--scope),
 * opening etcd and loading the cluster, confirmation prompts, REST calls, and the pure formatters. */
#ifndef PGVIGIL_CLI_COMMON_H
#define PGVIGIL_CLI_COMMON_H

#include "common/common.h"
#include "config/config.h"
#include "dcs/cluster.h"
#include "dcs/dcs.h"

#include <getopt.h>

#define CLI_DCS_TIMEOUT_MS 3000
#define CLI_DEFAULT_DCS_URL "http://127.0.0.1:2379"

/* getopt_long codes of the long-only options; commands number their own from CLI_OPT_NEXT. */
enum {
    CLI_OPT_DCS_URL = 0x100,
    CLI_OPT_SCOPE,
    CLI_OPT_NAMESPACE,
    CLI_OPT_NEXT = 0x120,
};

/* Every command's long option table starts with these (then its own, then {0}). */
#define CLI_CONN_LONGOPTS                                            \
    {"config", required_argument, NULL, 'c'},                        \
    {"dcs-url", required_argument, NULL, CLI_OPT_DCS_URL},           \
    {"scope", required_argument, NULL, CLI_OPT_SCOPE},               \
    {"namespace", required_argument, NULL, CLI_OPT_NAMESPACE},       \
    {"help", no_argument, NULL, 'h'}

/* ... and its short option string starts with this (':' = report missing arguments). */
#define CLI_CONN_SHORTOPTS ":c:h"

#define CLI_CONN_USAGE \
    "cluster selection (one of):\n" \
    "  -c, --config FILE     a node or client YAML file (scope, etcd3.hosts, restapi auth)\n" \
    "      --dcs-url URLS    etcd endpoints, e.g. http://127.0.0.1:2379[,http://...]\n" \
    "                        (default http://127.0.0.1:2379 when only --scope is given)\n" \
    "      --scope NAME      cluster name (overrides the file's scope)\n" \
    "      --namespace NS    key namespace (default /service/)\n" \
    "  environment: PGVIGIL_CONFIG, PGVIGIL_DCS_URL, PGVIGIL_SCOPE; REST API Basic auth\n" \
    "  without a config file: PGVIGIL_RESTAPI_USER, PGVIGIL_RESTAPI_PASSWORD\n" \
    "  -h, --help            show this help\n"

typedef struct CliConnOpts {
    const char *config_path;
    const char *dcs_url;
    const char *scope;
    const char *namespace_;
    bool allow_unreachable;   /* an etcd that does not answer is not an error: ctx->loaded is false
                                 and ctx->load_error says why */
    bool aa_group;            /* the prefix read is an active-active group's: scope is the group
                                 (--group, or the file's active_active.group) */
} CliConnOpts;

/* Store opt (a getopt_long result) in o when it is a connection option; false otherwise. */
bool cli_conn_opt(CliConnOpts *o, int opt, const char *arg);

/* Report a getopt_long failure ('?' or ':'): "error: unknown option --x" + usage hint.
 * Returns EXIT_USAGE. */
int cli_bad_option(const char *cmd, int opt, char **argv);

/* Option parsing of a command that takes only the connection options: returns -1 to go on,
 * or the exit code to return at once (after --help, or after printing a usage error). */
/* Options of the long-running commands (agent, proxy): -c FILE, --log-level L, --help.
 * *path keeps its value (e.g. from the environment) unless -c is given. Returns -1 to go on,
 * else the exit code to return (--help, a bad option, or no file: what names it). */
int cli_parse_daemon_opts(int argc, char **argv, void (*usage)(FILE *out), const char *what, const char **path,
                          const char **level);
int cli_parse_conn_only(const char *cmd, int argc, char **argv, void (*usage)(FILE *out), CliConnOpts *conn);

/* An open connection to one cluster. Owned fields are freed by cli_close(). */
typedef struct CliCtx {
    Config *cfg;            /* NULL when the cluster came from --dcs-url/--scope */
    Dcs *dcs;
    Cluster cluster;        /* as of the last cli_open()/cli_reload() */
    char *scope;
    char *where;            /* "node.yml" or "--dcs-url": named in hints */
    char *api_user;         /* REST API Basic auth, NULL = none */
    char *api_password;
    bool loaded;            /* the cluster was read (always, unless allow_unreachable) */
    char load_error[512];
} CliCtx;

/* Resolve the options (and environment), open the Dcs and load the cluster. On failure prints
 * the error and hint and returns the exit code (EXIT_USAGE, EXIT_CONFIG or EXIT_DCS); ctx is
 * then already closed. */
int cli_open(const CliConnOpts *o, CliCtx *ctx);
/* Read the cluster again (replaces ctx->cluster). On failure prints nothing, fills err and
 * leaves the previous cluster in place. */
bool cli_reload(CliCtx *ctx, Err *err);
/* Print a Dcs failure with the etcd hint; returns EXIT_DCS. */
int cli_dcs_error(const CliCtx *ctx, const Err *err);
void cli_close(CliCtx *ctx);   /* safe on a zeroed or already closed ctx */

/* Ask "question [y/N]" on the terminal. Returns 1 yes, 0 no, -1 when stdin is not a TTY. */
int cli_confirm(const char *question);

/* Parse a whole non-negative decimal integer in [min, max]. */
bool cli_parse_int(const char *s, int min, int max, int *out);

/* HTTP to a member's REST API. url is complete; body (JSON) may be NULL (sent as empty body for
 * POST). On a transport failure returns false with err naming the URL; otherwise true with the
 * HTTP status in *code and the response body (malloc'd, possibly "") in *resp. */
bool cli_http(const char *method, const char *url, const char *body, const char *user,
              const char *password, int timeout_ms, long *code, char **resp, Err *err);

/* ---- pure helpers (unit-tested) ---- */

/* REST base URL of a member: api_url without a trailing "/patroni" (and '/'). Caller frees. */
char *cli_api_base(const char *api_url);
/* State column: "streaming" for a running replica that streams, else the member's state. */
const char *cli_member_state(const Cluster *c, const Member *m);
/* Leader | Sync Standby | Replica | Uninitialized */
const char *cli_member_role(const Cluster *c, const Member *m);
/* Lag behind the leader in MB with one decimal; "" for the leader; "unknown". Returns the lag
 * in bytes, or -1 when blank or unknown. */
int64_t cli_member_lag(const Cluster *c, const Member *m, char *buf, size_t sz);
/* Non-default tags, "nofailover: true, failover_priority: 0"; "" when none. */
void cli_member_tags(const Tags *t, char *buf, size_t sz);

/* Split "http://u:p@h1:2379,h2:2379/" into host:port entries (and the credentials of the first
 * URL that has some; user and password may come back NULL). All outputs are malloc'd. */
bool cli_parse_dcs_urls(const char *urls, char ***hosts, int *n_hosts, char **user,
                        char **password, Err *err);
void cli_strv_free(char **v, int n);

/* A boxed text table. cells is row-major (nrows * ncols, NULL = ""). right[i] aligns column i
 * to the right. title (may be NULL) is drawn into the top border. Caller frees. */
char *cli_table(const char *title, const char *const *headers, const bool *right, int ncols,
                const char *const *cells, int nrows);

/* `pgvigil list` body: the member table plus "Maintenance mode: on" when paused. Caller frees. */
char *cli_format_members(const Cluster *c, const char *scope);
/* `pgvigil list --json`: array of {"Cluster","Member","Host","Role","State","TL","Lag in MB",
 * "Tags"} objects (Patroni's patronictl shape). Caller frees. */
char *cli_members_json(const Cluster *c, const char *scope);
/* `pgvigil history` table of a history key; "no failovers or switchovers yet\n" when empty or
 * NULL. NULL + err when the JSON is not an array. Caller frees. */
char *cli_format_history(const char *history_json, Err *err);
/* Pretty JSON (2-space indent, sorted keys) with a final newline. NULL + err on bad JSON. */
char *cli_json_pretty(const char *json, Err *err);
/* "key: old -> new" lines for every leaf that differs between two JSON objects (dotted paths,
 * sorted). A leaf missing from old_json is looked up in fallback_json (e.g. the defaults) and
 * shown as "(unset)" when missing there too; one missing from new_json shows "(removed)".
 * "" when nothing changed. Caller frees. */
char *cli_config_diff(const char *old_json, const char *new_json, const char *fallback_json);

#endif
