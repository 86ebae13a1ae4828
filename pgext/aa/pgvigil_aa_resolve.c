/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_resolve.c
 *	  Conflict resolution policies of pgvigil's active-active groups.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgvigil_aa_resolve.h"

bool
aa_remote_wins_lww(TimestampTz local_ts, const char *local_node,
				   TimestampTz remote_ts, const char *remote_node)
{
	if (remote_ts != local_ts)
		return remote_ts > local_ts;
	/* a tie: the node names decide, the same way on both sides */
	return strcmp(remote_node, local_node) > 0;
}
