/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_resolve.c
 *	  Conflict resolution policies of pgvigil's active-active groups.
 *
 *-------------------------------------------------------------------------
 */
#include "pgvigil_aa_resolve.h"

#include <string.h>

static const char *const policy_names[] = {
	[AA_POLICY_LAST_WRITER_WINS] = "last_writer_wins",
	[AA_POLICY_FIRST_WRITER_WINS] = "first_writer_wins",
	[AA_POLICY_NODE_PRIORITY] = "node_priority",
	[AA_POLICY_KEEP_LOCAL] = "keep_local",
	[AA_POLICY_APPLY_REMOTE] = "apply_remote",
	[AA_POLICY_SKIP] = "skip",
	[AA_POLICY_ERROR] = "error",
	[AA_POLICY_CUSTOM] = "custom",
};

bool
aa_policy_from_name(const char *name, AaPolicy *policy)
{
	for (int i = 0; i < (int) (sizeof(policy_names) / sizeof(policy_names[0])); i++)
		if (strcmp(name, policy_names[i]) == 0)
		{
			*policy = (AaPolicy) i;
			return true;
		}
	return false;
}

const char *
aa_policy_name(AaPolicy policy)
{
	return policy_names[policy];
}

bool
aa_policy_orders(AaPolicy policy)
{
	return policy == AA_POLICY_LAST_WRITER_WINS || policy == AA_POLICY_FIRST_WRITER_WINS ||
		policy == AA_POLICY_NODE_PRIORITY;
}

/* the tie-break: the version written by the node whose name sorts last */
static bool
remote_name_wins(const AaVersion *local, const AaVersion *remote)
{
	return strcmp(remote->node, local->node) > 0;
}

bool
aa_remote_wins(AaPolicy policy, const AaVersion *local, const AaVersion *remote)
{
	switch (policy)
	{
		case AA_POLICY_NODE_PRIORITY:
			if (remote->priority != local->priority)
				return remote->priority > local->priority;
			/* equal priorities: as last-writer-wins */
			/* FALLTHROUGH */
		case AA_POLICY_LAST_WRITER_WINS:
			if (remote->commit_ts != local->commit_ts)
				return remote->commit_ts > local->commit_ts;
			return remote_name_wins(local, remote);
		case AA_POLICY_FIRST_WRITER_WINS:
			if (remote->commit_ts != local->commit_ts)
				return remote->commit_ts < local->commit_ts;
			return remote_name_wins(local, remote);
		default:
			/* not an ordering policy: the caller decides */
			return false;
	}
}
