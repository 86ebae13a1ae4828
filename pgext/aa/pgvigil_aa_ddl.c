/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_ddl.c
 *	  DDL replication: CREATE/ALTER/DROP of tables, indexes, sequences and
 *	  views a client runs on one node run on every node, in the order of the
 *	  rows around them.
 *
 * The ProcessUtility hook logs such a statement, before it runs, as a
 * transactional logical message (prefix "pgvigil_aa.ddl": the search_path,
 * a zero byte, the statement's own text out of the query string).  It goes
 * out with its transaction only if that commits, between the rows written
 * before and after it.  The apply worker runs it under the same search_path
 * in the applying transaction; the event triggers of pgvigil_aa are enabled
 * ALWAYS, so the new table gets its tombstone triggers and a new sequence
 * its node-distinct step there too.
 *
 * Only top-level statements are sent: DDL that functions, DO blocks or event
 * triggers run would be run again by the same functions on the other nodes.
 * Not sent: statements on temporary relations, CREATE TABLE AS / SELECT INTO
 * (their rows come as rows), CREATE INDEX CONCURRENTLY and DETACH PARTITION
 * CONCURRENTLY (they cannot run in the applying transaction: run them on
 * every node), and other kinds of statements.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "replication/message.h"
#include "nodes/makefuncs.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "pgvigil_aa_apply.h"
#include "pgvigil_aa_ddl.h"
#include "pgvigil_aa_ddl_lock.h"

/* Is the relation a temporary one (by its persistence, its schema, or
 * the relation the name finds now)? */
static bool
rangevar_is_temp(RangeVar *rv)
{
	Oid			relid;

	if (rv->relpersistence == RELPERSISTENCE_TEMP ||
		(rv->schemaname && strcmp(rv->schemaname, "pg_temp") == 0))
		return true;
	relid = RangeVarGetRelid(rv, NoLock, true);
	return OidIsValid(relid) && get_rel_persistence(relid) == RELPERSISTENCE_TEMP;
}

/* Is this statement one a group replicates?  Never one on a temporary
 * relation (a peer would find no such relation, or a permanent one of the
 * same name). */
static bool
replicated_ddl(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_CreateStmt:
			return !rangevar_is_temp(((CreateStmt *) stmt)->relation);
		case T_IndexStmt:
			if (rangevar_is_temp(((IndexStmt *) stmt)->relation))
				return false;
			if (((IndexStmt *) stmt)->concurrent)
			{
				ereport(WARNING,
						(errmsg("pgvigil_aa: CREATE INDEX CONCURRENTLY is not sent to the other nodes of the group"),
						 errhint("Run it on every node.")));
				return false;
			}
			return true;
		case T_ViewStmt:
			return !rangevar_is_temp(((ViewStmt *) stmt)->view);
		case T_CreateSeqStmt:
			return !rangevar_is_temp(((CreateSeqStmt *) stmt)->sequence);
		case T_AlterSeqStmt:
			return !rangevar_is_temp(((AlterSeqStmt *) stmt)->sequence);
		case T_AlterTableStmt:
			{
				AlterTableStmt *at = (AlterTableStmt *) stmt;
				ListCell   *lc;

				if (rangevar_is_temp(at->relation))
					return false;
				/* (cannot run in the applying transaction) */
				foreach(lc, at->cmds)
				{
					AlterTableCmd *cmd = lfirst(lc);

					if (cmd->subtype == AT_DetachPartition && cmd->def &&
						IsA(cmd->def, PartitionCmd) && ((PartitionCmd *) cmd->def)->concurrent)
						return false;
				}
				return true;
			}
		case T_RenameStmt:
			return ((RenameStmt *) stmt)->relation == NULL || !rangevar_is_temp(((RenameStmt *) stmt)->relation);
		case T_DropStmt:
			{
				DropStmt   *ds = (DropStmt *) stmt;
				ObjectType	t = ds->removeType;
				ListCell   *lc;

				if (ds->concurrent ||
					!(t == OBJECT_TABLE || t == OBJECT_INDEX || t == OBJECT_SEQUENCE || t == OBJECT_VIEW))
					return false;
				foreach(lc, ds->objects)
					if (rangevar_is_temp(makeRangeVarFromNameList((List *) lfirst(lc))))
						return false;
				return true;
			}
		default:
			return false;
	}
}

void
aa_ddl_capture(PlannedStmt *pstmt, const char *queryString, ProcessUtilityContext context)
{
	StringInfoData msg;
	int			len;

	if (context != PROCESS_UTILITY_TOPLEVEL || queryString == NULL || pstmt->stmt_location < 0 ||
		!OidIsValid(get_extension_oid("pgvigil_aa", true)) || !replicated_ddl(pstmt->utilityStmt))
		return;
	/* the group's DDL in one order: this node's only while it holds the lock */
	aa_ddl_lock_take();
	len = pstmt->stmt_len > 0 ? pstmt->stmt_len : (int) strlen(queryString + pstmt->stmt_location);
	initStringInfo(&msg);
	appendStringInfoString(&msg, namespace_search_path);
	appendStringInfoChar(&msg, '\0');
	appendBinaryStringInfo(&msg, queryString + pstmt->stmt_location, len);
	(void) LogLogicalMessage(AA_DDL_PREFIX, msg.data, msg.len, true);
	pfree(msg.data);
}

void
aa_ddl_apply(const char *content, int len)
{
	const char *search_path = content;
	size_t		splen = strnlen(content, len);
	char	   *stmt;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	if ((int) splen >= len)
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" sent a malformed DDL message", aa_peer_name)));
	stmt = pnstrdup(content + splen + 1, len - splen - 1);
	SetConfigOption("search_path", search_path, PGC_SUSET, PGC_S_OVERRIDE);
	PushActiveSnapshot(GetTransactionSnapshot());
	/* in a subtransaction: a statement that fails here may be skipped on
	 * the operator's decision */
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		if (SPI_execute(stmt, false, 0) < 0)
			elog(ERROR, "SPI_execute failed");
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);
		if (!aa_change_skip_failed_ddl(stmt, edata->message))
			ereport(ERROR,
					(errcode(edata->sqlerrcode),
					 errmsg("pgvigil_aa: DDL from peer \"%s\" failed here: %s", aa_peer_name, edata->message),
					 errdetail("Statement: %s", stmt),
					 errhint("Make it succeed here, or skip it with SELECT pgvigil_aa.resolve_stopped('%s', 'local');"
							 " the apply resumes within 5 s.", aa_peer_name)));
	}
	PG_END_TRY();
	PopActiveSnapshot();
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);
}
