/* DNS failover: make one A/AAAA record name the leader, with an RFC 2136 dynamic update signed
 * with TSIG, sent as one message whose prerequisite is the value read just before (so two
 * nodes racing cannot both win blindly). A background thread does the network work, so the
 * HA loop never waits on DNS. Ownership: dns_updater_new() / dns_updater_free(). */
#ifndef PGVIGIL_DNS_UPDATE_H
#define PGVIGIL_DNS_UPDATE_H

#include "common/common.h"
#include "config/config.h"

typedef struct DnsUpdater DnsUpdater;

/* Validate cfg (server, zone, record, address, TSIG key) and start the thread. NULL + err
 * naming the key on a bad setting (e.g. "dns.tsig_secret: not valid base64"). */
DnsUpdater *dns_updater_new(const DnsConfig *cfg, Err *err);
/* Ask for the record to name this node (cfg->address). Non-blocking. The thread queries the
 * current value, sends the update with a prerequisite on it, and retries with backoff until
 * it succeeds or dns_updater_cancel() is called. Calling it again while done is a no-op. */
void dns_updater_claim(DnsUpdater *u);
/* This node is no longer leader: stop trying (an update already sent stays). */
void dns_updater_cancel(DnsUpdater *u);
/* true once the last claim succeeded (the server answered NOERROR). */
bool dns_updater_done(DnsUpdater *u);
void dns_updater_free(DnsUpdater *u);      /* stops the thread; NULL is a no-op */

/* One synchronous update, for the thread and for tests: replace the record's RRset of
 * new_addr's family with new_addr, with the prerequisite that the RRset is exactly old_addr
 * (or that it does not exist when old_addr is NULL). *prereq_failed is set when the server
 * answered NXRRSET/YXRRSET (the value changed under us). */
bool dns_update_once(const DnsConfig *cfg, const char *old_addr, const char *new_addr,
                     bool *prereq_failed, Err *err);
/* Query the record's current A (or AAAA when want_v6) value from cfg->server. *addr gets
 * a malloc'd text address, or NULL when the record has none. */
bool dns_query_addr(const DnsConfig *cfg, bool want_v6, char **addr, Err *err);

#endif
