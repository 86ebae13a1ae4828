/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_resolve.h
 *	  Conflict resolution policies: which of two versions of a row wins, the
 *	  same on every node.
 *
 * Pure code (no server headers, no allocation): the unit tests build it on
 * its own (tests/unit/test_aa_resolve.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGVIGIL_AA_RESOLVE_H
#define PGVIGIL_AA_RESOLVE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum AaPolicy
{
	AA_POLICY_LAST_WRITER_WINS,	/* later commit wins; ties: node name */
	AA_POLICY_FIRST_WRITER_WINS,	/* earlier commit wins; ties: node name */
	AA_POLICY_NODE_PRIORITY,	/* higher priority wins; equal: last writer */
	AA_POLICY_KEEP_LOCAL,		/* the local version stays (nodes may differ) */
	AA_POLICY_APPLY_REMOTE,		/* the remote change is applied (nodes may differ) */
	AA_POLICY_SKIP,				/* the remote change is skipped: as keep_local */
	AA_POLICY_ERROR,			/* the apply stops until the operator decides */
	AA_POLICY_CUSTOM			/* a SQL function decides */
} AaPolicy;

/* One version of a row: the commit that wrote it (or deleted it), its time
 * in microseconds (PostgreSQL's TimestampTz). */
typedef struct AaVersion
{
	int64_t		commit_ts;
	const char *node;
	int			priority;
} AaVersion;

/* The policy named so in pgvigil_aa.table_policies; false for an unknown name. */
extern bool aa_policy_from_name(const char *name, AaPolicy *policy);
extern const char *aa_policy_name(AaPolicy policy);

/* Whether a policy orders versions (last/first writer, priority): the same
 * winner on every node, so the nodes converge. */
extern bool aa_policy_orders(AaPolicy policy);

/*
 * For an ordering policy: does the remote version win over the local one?
 * Equal versions are broken by node name (byte order, the name sorting last
 * wins), the same way on both sides.  false for other policies.
 */
extern bool aa_remote_wins(AaPolicy policy, const AaVersion *local, const AaVersion *remote);

#endif
