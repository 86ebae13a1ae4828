/* Two sites (data centers), each its own cluster and etcd: what `pgvigil site` and `pgvigil
 * drill` share (cmd_site.c). */
#ifndef PGVIGIL_CLI_SITE_H
#define PGVIGIL_CLI_SITE_H

#include "cli/cli_common.h"

#include <jansson.h>

typedef struct Site {
    CliCtx ctx;
    bool open;
} Site;

/* How long each step of a site switchover took (seconds). */
typedef struct SiteSteps {
    double demote;          /* the primary site's leader stopped cleanly and runs as a standby leader */
    double catch_up;        /* the other site's standby leader received everything up to that point */
    double promote;         /* ... was promoted */
    double follow;          /* the demoted site streams from the new primary site */
    double total;
    char from[128], to[128];
    int new_timeline;
} SiteSteps;

/* The other site's options, shared by `site` and `drill` (codes above the commands' own). */
enum { SITE_OPT_PEER_URL = CLI_OPT_NEXT + 0x40, SITE_OPT_PEER_SCOPE, SITE_OPT_PEER_NS };
#define SITE_PEER_LONGOPTS                                                 \
    {"peer-dcs-url", required_argument, NULL, SITE_OPT_PEER_URL},          \
    {"peer-scope", required_argument, NULL, SITE_OPT_PEER_SCOPE},          \
    {"peer-namespace", required_argument, NULL, SITE_OPT_PEER_NS}

typedef struct SitePeerOpts {
    const char *url, *scope, *ns;
} SitePeerOpts;

/* Store opt when it is one of SITE_PEER_LONGOPTS; false otherwise. */
bool site_peer_opt(SitePeerOpts *o, int opt, const char *arg);

/* This site (conn) and the other one (flags, else site.peer of the file). tolerate: the other
 * site's etcd may not answer (peer->ctx.loaded false). Errors are printed; returns the exit code. */
int site_open_pair(const CliConnOpts *conn, const SitePeerOpts *po, bool tolerate, Site *own, Site *peer);
void site_close_pair(Site *own, Site *peer);
/* `pgvigil site switchover` (prints its steps); steps (may be NULL) gets their durations. */
int site_switchover_run(Site *own, Site *peer, int timeout_s, SiteSteps *steps);
/* `pgvigil site promote` and `site rejoin` (print their steps; return the exit code). */
int site_promote_run(Site *own, Site *peer, bool fenced, const char *target_time, int timeout_s);
int site_rejoin_run(Site *own, Site *peer);
/* Wait until s's leader is a standby leader streaming on timeline or later. */
bool site_wait_following(Site *s, int timeline, int64_t timeout_ms, Err *err);

/* site_target.c: `site promote --target-time`, asked of the standby leader dl with the file's
 * superuser (own's -c FILE) */
/* T as an absolute UTC time (norm), read by the server, and whether dl applied nothing at or
 * after it: 1 yes, 0 no, -1 + err cannot tell, -2 + err T is not a time (e.g. 'now'). */
int site_target_check(const Site *own, const Member *dl, const char *when, char *norm, size_t nsz, Err *err);
/* Pause (or resume) dl's replay: nothing more is applied while the other site is demoted. */
bool site_target_pause(const Site *own, const Member *dl, bool pause, Err *err);
const Member *site_leader(const Cluster *c);
bool site_is_standby(const Cluster *c);
/* A member's GET /patroni, parsed (NULL when it does not answer). */
json_t *site_member_status(const CliCtx *ctx, const Member *m);

#endif
