/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_seen.c
 *	  The causality messages: logged before a client's writing statements,
 *	  read back by the apply worker.
 *
 * The message is logged at the start of each writing statement (not once
 * per transaction): a statement sees what was applied before it began, and
 * a change applied to one of its rows after that waits for the statement's
 * row lock.  It is logged again only when the map changed since the
 * transaction's last one.  The apply worker's own statements log nothing
 * (session_replication_role = replica): what they write is never sent on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "replication/message.h"
#include "storage/proc.h"
#include "utils/memutils.h"

#include "pgvigil_aa_seen.h"
#include "pgvigil_aa_shared.h"

const AaSeen *aa_applying_seen = NULL;

static ExecutorStart_hook_type prev_executor_start = NULL;

/* the last map logged, and in which transaction */
static LocalTransactionId logged_in = InvalidLocalTransactionId;
static char *logged_text = NULL;

static void
log_seen_if_changed(void)
{
	StringInfoData text;

	initStringInfo(&text);
	aa_seen_text(MyDatabaseId, &text);
	if (text.len == 0)
		return;
	if (logged_in == MyProc->lxid && logged_text && strcmp(logged_text, text.data) == 0)
	{
		pfree(text.data);
		return;
	}
	(void) LogLogicalMessage(AA_SEEN_PREFIX, text.data, text.len, true);
	if (logged_text)
		pfree(logged_text);
	logged_text = MemoryContextStrdup(TopMemoryContext, text.data);
	logged_in = MyProc->lxid;
	pfree(text.data);
}

static void
aa_executor_start(QueryDesc *queryDesc, int eflags)
{
	bool		writes = queryDesc->operation == CMD_INSERT || queryDesc->operation == CMD_UPDATE ||
		queryDesc->operation == CMD_DELETE || queryDesc->operation == CMD_MERGE ||
		queryDesc->plannedstmt->hasModifyingCTE;

	if (writes && aa_shared != NULL && !(eflags & EXEC_FLAG_EXPLAIN_ONLY) &&
		SessionReplicationRole != SESSION_REPLICATION_ROLE_REPLICA &&
		XLogLogicalInfoActive() && !RecoveryInProgress() && !XactReadOnly)
		log_seen_if_changed();
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

void
aa_seen_install(void)
{
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = aa_executor_start;
}

void
aa_seen_format(const AaSeen *map, StringInfo out)
{
	for (int i = 0; i < map->n; i++)
		appendStringInfo(out, "%s%s=" INT64_FORMAT, out->len ? ";" : "", map->node[i], (int64) map->ts[i]);
}
