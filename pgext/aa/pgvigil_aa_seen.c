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
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "miscadmin.h"
#include "replication/message.h"
#include "storage/proc.h"
#include "portability/instr_time.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "pgvigil_aa_ddl.h"
#include "pgvigil_aa_handover.h"
#include "pgvigil_aa_seen.h"
#include "pgvigil_aa_shared.h"

const AaSeen *aa_applying_seen = NULL;

static ExecutorStart_hook_type prev_executor_start = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;

/* the last map logged, and in which transaction; the newest commit time in it */
static LocalTransactionId logged_in = InvalidLocalTransactionId;
static char *logged_text = NULL;
static TimestampTz logged_newest = 0;
static LocalTransactionId newest_in = InvalidLocalTransactionId;

int			aa_max_clock_skew_ms = 1000;

static void
log_seen_if_changed(void)
{
	StringInfoData text;

	TimestampTz newest;

	initStringInfo(&text);
	newest = aa_seen_text(MyDatabaseId, &text);
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
	/* (kept for the commit even when a savepoint rolls the message back: the
	 * transaction's earlier writes followed what it saw) */
	if (newest_in != MyProc->lxid)
		logged_newest = 0;
	logged_newest = Max(logged_newest, newest);
	newest_in = MyProc->lxid;
	pfree(text.data);
}

/*
 * Causality across clocks: a transaction that wrote after seeing a peer's
 * commit made at T must commit later than T, or last-writer-wins elsewhere
 * could rank it before the change it followed.  When this node's clock is
 * not past T (the peer's clock is ahead), the commit waits until it is, at
 * most pgvigil_aa.max_clock_skew; beyond, it commits with a warning that
 * the clocks differ by more than the group tolerates.
 */
static void
wait_for_clock(XactEvent event, void *arg)
{
	instr_time	start,
				now;

	if (event != XACT_EVENT_PRE_COMMIT || newest_in != MyProc->lxid || aa_max_clock_skew_ms <= 0 ||
		GetCurrentTimestamp() > logged_newest)
		return;
	INSTR_TIME_SET_CURRENT(start);
	while (GetCurrentTimestamp() <= logged_newest)
	{
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, start);
		if (INSTR_TIME_GET_MILLISEC(now) >= aa_max_clock_skew_ms)
		{
			ereport(WARNING,
					(errmsg("pgvigil_aa: this node's clock is behind a peer's by more than pgvigil_aa.max_clock_skew (%d ms)",
							aa_max_clock_skew_ms),
					 errdetail("A transaction that follows a change committed at %s commits earlier by this clock; last-writer-wins may rank it first.",
							   timestamptz_to_str(logged_newest)),
					 errhint("Synchronize the nodes' clocks (NTP).")));
			return;
		}
		CHECK_FOR_INTERRUPTS();
		pg_usleep(1000L);
	}
}

/* a client's writing statement on a primary (the apply worker's own are
 * never sent on) */
static bool
may_log(void)
{
	return aa_shared != NULL && SessionReplicationRole != SESSION_REPLICATION_ROLE_REPLICA &&
		XLogLogicalInfoActive() && !RecoveryInProgress() && !XactReadOnly;
}

static void
aa_executor_start(QueryDesc *queryDesc, int eflags)
{
	bool		writes = queryDesc->operation == CMD_INSERT || queryDesc->operation == CMD_UPDATE ||
		queryDesc->operation == CMD_DELETE || queryDesc->operation == CMD_MERGE ||
		queryDesc->plannedstmt->hasModifyingCTE;

	if (writes && !(eflags & EXEC_FLAG_EXPLAIN_ONLY) && may_log())
	{
		aa_handover_check();
		log_seen_if_changed();
	}
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

/* A rolled-back subtransaction takes its message along: the next statement
 * logs the map again. */
static void
forget_logged(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		logged_in = InvalidLocalTransactionId;
}

/* COPY FROM and TRUNCATE write without the executor; DDL is sent along
 * (pgvigil_aa_ddl.c) */
static void
aa_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				   ProcessUtilityContext context, ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	if (((IsA(stmt, CopyStmt) && ((CopyStmt *) stmt)->is_from) || IsA(stmt, TruncateStmt)) && may_log())
	{
		aa_handover_check();
		log_seen_if_changed();
	}
	if (may_log())
		aa_ddl_capture(pstmt, queryString, context);
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

void
aa_seen_install(void)
{
	DefineCustomIntVariable("pgvigil_aa.max_clock_skew",
							"How long a commit that follows a peer's change waits for this node's clock to pass that change's time.",
							"Beyond it the commit goes on with a warning. 0: no wait.",
							&aa_max_clock_skew_ms, 1000, 0, 60000, PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = aa_executor_start;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = aa_process_utility;
	RegisterXactCallback(wait_for_clock, NULL);
	RegisterSubXactCallback(forget_logged, NULL);
}

void
aa_seen_format(const AaSeen *map, StringInfo out)
{
	for (int i = 0; i < map->n; i++)
		appendStringInfo(out, "%s%s=" INT64_FORMAT, out->len ? ";" : "", map->node[i], (int64) map->ts[i]);
}
