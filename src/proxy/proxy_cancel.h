/* Which server a CancelRequest belongs to (see proxy_cancel.c). Thread-safe. */
#ifndef PGVIGIL_PROXY_CANCEL_H
#define PGVIGIL_PROXY_CANCEL_H

#include "common/common.h"
#include "proxy/proxy.h"

void proxy_cancel_register(uint32_t pid, uint32_t key, const struct sockaddr_storage *addr, socklen_t len);
void proxy_cancel_forget(uint32_t pid, uint32_t key);
void proxy_cancel_clear(void);      /* at exit */
/* Forward the 16-byte CancelRequest on a background thread: to the server that issued the
 * key when known (returns true), else to every backend of snap. Never blocks the caller. */
bool proxy_cancel_route(const unsigned char *pkt, uint32_t pid, uint32_t key, const ProxySnapshot *snap);

#endif
