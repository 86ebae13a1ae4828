/* The TCP connections a local server has accepted, from /proc/net/tcp and tcp6 (Linux): a planned
 * switchover counts those postgres has not reported yet (a session still authenticating is not
 * in pg_stat_activity), so that it does not refuse the writes of a session a proxy routed just
 * before it saw the handover. */
#ifndef PGVIGIL_TCP_PEERS_H
#define PGVIGIL_TCP_PEERS_H

#include "common/common.h"

/* One line of /proc/net/tcp{,6}: true when it is an established connection whose local port is
 * port; *remote_port gets the other end's port. Pure. */
bool tcp_line_established_on(const char *line, int port, int *remote_port);

/* The remote ports of the established connections to local port `port` (at most max); -1 when
 * /proc/net/tcp cannot be read. */
int tcp_peers_on_port(int port, int *remote_ports, int max);

#endif
