/* Floating IP: add the configured address to an interface through rtnetlink, announce it with
 * gratuitous ARP, and remove it. The agent adds it only while it holds the leader lease.
 * Ownership: vip_new() returns a handle freed by vip_free() (which does not remove the address). */
#ifndef PGVIGIL_VIP_H
#define PGVIGIL_VIP_H

#include "common/common.h"
#include "config/config.h"

typedef struct Vip Vip;

/* Validate cfg (address "a.b.c.d[/prefix]", interface name). NULL + err on a bad setting,
 * naming the key (e.g. "vip.address: invalid IPv4 address \"10.0.0\""). The interface need
 * not exist yet. */
Vip *vip_new(const VipConfig *cfg, Err *err);
/* Idempotent. Adds the address when absent and then sends cfg->arp_count gratuitous ARPs;
 * *added (may be NULL) tells whether it was newly added. Fast (no network round trips). */
bool vip_add(Vip *v, bool *added, Err *err);
/* Idempotent: removes the address when present; *removed (may be NULL) tells. */
bool vip_remove(Vip *v, bool *removed, Err *err);
/* Whether the address is on the interface now (false on error). */
bool vip_present(Vip *v);
const char *vip_describe(const Vip *v);    /* "192.0.2.10/24 on eth0", for logs */
void vip_free(Vip *v);                     /* NULL is a no-op */

#endif
