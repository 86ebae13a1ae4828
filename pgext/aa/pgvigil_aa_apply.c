/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_apply.c
 *	  The apply worker of pgvigil's active-active groups: one background
 *	  worker per peer reads the peer's pgvigil_aa slot and applies its
 *	  transactions here, detecting and resolving conflicts.
 *
 * Each remote transaction is applied in one local transaction under the
 * peer's replication origin (pgvigil_aa_<peer>), whose LSN and timestamp are
 * set in the same commit: progress is crash-safe, the commit timestamp of an
 * applied row is the remote commit time, and the output plugin never sends
 * the change on.
 *
 * Rows are applied through SPI, keyed by the peer's replica identity
 * columns.  Before a change is applied, the local version of the row is read
 * with the commit time and origin of the transaction that wrote it
 * (track_commit_timestamp).  A row written by another node than this peer is
 * a conflict, resolved by last-writer-wins with the node name as tie-break
 * (pgvigil_aa_resolve.c); conflicts that throw a write away, and changes
 * that find no row, are recorded in pgvigil_aa.conflicts in the same
 * transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "replication/logicalproto.h"
#include "replication/origin.h"
#include "replication/walreceiver.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "pgvigil_aa_resolve.h"

PG_FUNCTION_INFO_V1(pgvigil_aa_start_apply);
extern PGDLLEXPORT void pgvigil_aa_apply_main(Datum arg);

#define FEEDBACK_INTERVAL_MS 1000

/* A relation of the peer, as its RELATION message describes it, with the
 * local types of its columns (found at its first change). */
typedef struct AaRel
{
	LogicalRepRelId remoteid;	/* hash key */
	LogicalRepRelation *rel;
	bool		resolved;
	char	   *qualname;
	char	  **typnames;		/* local type of each remote column */
} AaRel;

static MemoryContext ApplyContext = NULL;
static MemoryContext ApplyMessageCxt = NULL;
static MemoryContext ChangeCxt = NULL;
static HTAB *relations = NULL;
static char peer_name[NAMEDATALEN];
static char local_name[NAMEDATALEN];
static char origin_prefix[] = "pgvigil_aa_";
static TimestampTz remote_commit_ts;
static bool in_remote_txn = false;
static XLogRecPtr last_received = InvalidXLogRecPtr;
static XLogRecPtr last_applied = InvalidXLogRecPtr;
static StringInfo reply_message = NULL;

Datum
pgvigil_aa_start_apply(PG_FUNCTION_ARGS)
{
	char	   *peer = text_to_cstring(PG_GETARG_TEXT_PP(0));
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	pid_t		pid;

	if (strlen(peer) >= BGW_EXTRALEN || strlen(peer) + sizeof(origin_prefix) > NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pgvigil_aa: peer name \"%s\" is too long", peer)));
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pgvigil_aa");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pgvigil_aa_apply_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pgvigil_aa apply from %s", peer);
	snprintf(worker.bgw_type, BGW_MAXLEN, "pgvigil_aa apply");
	worker.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
	strlcpy(worker.bgw_extra, peer, BGW_EXTRALEN);
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("pgvigil_aa: could not start the apply worker for peer \"%s\"", peer),
				 errhint("Raise max_worker_processes.")));
	if (WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
		ereport(ERROR,
				(errmsg("pgvigil_aa: the apply worker for peer \"%s\" did not start", peer)));
	PG_RETURN_INT32(pid);
}

/* ---- SQL helpers (inside a transaction, SPI connected) */

static void
spi_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect)
{
	int			rc;

	if (SPI_tuptable)
		SPI_freetuptable(SPI_tuptable);
	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc < 0 || (expect >= 0 && SPI_processed != (uint64) expect))
		ereport(ERROR,
				(errmsg("pgvigil_aa: applying from peer \"%s\": \"%s\" returned %d (%llu rows)", peer_name, sql, rc,
						(unsigned long long) SPI_processed)));
}

static char *
spi_text(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/* ---- relations */

static AaRel *
get_rel(LogicalRepRelId remoteid)
{
	bool		found;
	AaRel	   *r = hash_search(relations, &remoteid, HASH_FIND, &found);

	if (!found)
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" sent a change of relation %u before describing it",
						peer_name, remoteid)));
	if (!r->resolved)
	{
		LogicalRepRelation *lr = r->rel;
		MemoryContext old = MemoryContextSwitchTo(ApplyContext);
		Oid			relid = RangeVarGetRelid(makeRangeVar(lr->nspname, lr->relname, -1), NoLock, true);

		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("pgvigil_aa: table \"%s.%s\" of peer \"%s\" does not exist here",
							lr->nspname, lr->relname, peer_name)));
		if (bms_is_empty(lr->attkeys))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("pgvigil_aa: table \"%s.%s\" has no primary key or replica identity index",
							lr->nspname, lr->relname),
					 errdetail("Its changes cannot be matched to rows on the other nodes.")));
		if (lr->replident == REPLICA_IDENTITY_FULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("pgvigil_aa: table \"%s.%s\" has REPLICA IDENTITY FULL, which is not supported yet",
							lr->nspname, lr->relname),
					 errhint("Give it a primary key or a replica identity index.")));
		r->qualname = quote_qualified_identifier(lr->nspname, lr->relname);
		r->typnames = palloc(sizeof(char *) * lr->natts);
		for (int i = 0; i < lr->natts; i++)
		{
			AttrNumber	att = get_attnum(relid, lr->attnames[i]);

			if (att == InvalidAttrNumber)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("pgvigil_aa: column \"%s\" of table \"%s.%s\" of peer \"%s\" does not exist here",
								lr->attnames[i], lr->nspname, lr->relname, peer_name)));
			{
				Oid			typid,
							collid;
				int32		typmod;

				/* with its modifier: a bare character or bit would mean length 1 */
				get_atttypetypmodcoll(relid, att, &typid, &typmod, &collid);
				r->typnames[i] = format_type_with_typemod(typid, typmod);
			}
		}
		r->resolved = true;
		MemoryContextSwitchTo(old);
	}
	return r;
}

static void
handle_relation(StringInfo s)
{
	MemoryContext old = MemoryContextSwitchTo(ApplyContext);
	LogicalRepRelation *lr = logicalrep_read_rel(s);
	bool		found;
	AaRel	   *r = hash_search(relations, &lr->remoteid, HASH_ENTER, &found);

	/* described again: it changed; its local types are looked up again */
	r->rel = lr;
	r->resolved = false;
	MemoryContextSwitchTo(old);
}

/* ---- building statements: values go as text parameters cast to the local types */

typedef struct Stmt
{
	StringInfoData sql;
	int			n;
	Oid		   *types;
	Datum	   *values;
	char	   *nulls;
} Stmt;

static void
stmt_init(Stmt *st, int max)
{
	initStringInfo(&st->sql);
	st->n = 0;
	st->types = palloc(sizeof(Oid) * (max + 1));
	st->values = palloc(sizeof(Datum) * (max + 1));
	st->nulls = palloc(max + 1);
}

/* append "$n::type" for column i of tup */
static void
stmt_param(Stmt *st, AaRel *r, LogicalRepTupleData *tup, int i)
{
	st->types[st->n] = TEXTOID;
	if (tup->colstatus[i] == LOGICALREP_COLUMN_NULL)
	{
		st->values[st->n] = (Datum) 0;
		st->nulls[st->n] = 'n';
	}
	else
	{
		st->values[st->n] = CStringGetTextDatum(tup->colvalues[i].data);
		st->nulls[st->n] = ' ';
	}
	st->n++;
	appendStringInfo(&st->sql, "$%d::%s", st->n, r->typnames[i]);
}

static void
stmt_key_where(Stmt *st, AaRel *r, LogicalRepTupleData *keytup)
{
	bool		first = true;

	appendStringInfoString(&st->sql, " WHERE ");
	for (int i = 0; i < r->rel->natts; i++)
	{
		if (!bms_is_member(i, r->rel->attkeys))
			continue;
		if (!first)
			appendStringInfoString(&st->sql, " AND ");
		first = false;
		appendStringInfo(&st->sql, "aa_l.%s = ", quote_identifier(r->rel->attnames[i]));
		stmt_param(st, r, keytup, i);
	}
}

static char *
tuple_text(AaRel *r, LogicalRepTupleData *tup, bool keys_only)
{
	StringInfoData out;

	initStringInfo(&out);
	for (int i = 0; i < r->rel->natts && i < tup->ncols; i++)
	{
		if (keys_only && !bms_is_member(i, r->rel->attkeys))
			continue;
		if (out.len)
			appendStringInfoString(&out, ", ");
		appendStringInfo(&out, "%s=%s", r->rel->attnames[i],
						 tup->colstatus[i] == LOGICALREP_COLUMN_NULL ? "NULL" :
						 tup->colstatus[i] == LOGICALREP_COLUMN_UNCHANGED ? "(unchanged)" :
						 tup->colvalues[i].data);
	}
	return out.data;
}

/* ---- the local version of a row */

typedef struct LocalRow
{
	bool		found;
	bool		has_ts;
	TimestampTz ts;
	char	   *node;			/* the node that wrote it */
	char	   *text;
} LocalRow;

static void
read_local(AaRel *r, LogicalRepTupleData *keytup, LocalRow *out)
{
	Stmt		st;
	char	   *xmin;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	/*
	 * Lock the row first: a local transaction that changed it meanwhile is
	 * waited for, and the version returned is the newest (xmin and the row
	 * are re-read from it).  Its writer is asked afterwards: a function
	 * joined into the locking query would keep its answer for the older
	 * version.
	 */
	stmt_init(&st, r->rel->natts);
	appendStringInfo(&st.sql, "SELECT aa_l.xmin::text, row_to_json(aa_l.*)::text FROM ONLY %s aa_l", r->qualname);
	stmt_key_where(&st, r, keytup);
	appendStringInfoString(&st.sql, " FOR UPDATE OF aa_l");
	spi_exec(st.sql.data, st.n, st.types, st.values, st.nulls, -1);
	memset(out, 0, sizeof(*out));
	if (SPI_processed == 0)
		return;
	out->found = true;
	xmin = pstrdup(spi_text(0, 1));
	out->text = pstrdup(spi_text(0, 2));
	values[0] = CStringGetTextDatum(xmin);
	spi_exec("SELECT c.timestamp, COALESCE(o.roname, '') FROM pg_xact_commit_timestamp_origin($1::xid) c"
			 " LEFT JOIN pg_replication_origin o ON o.roident = c.roident",
			 1, types, values, NULL, 1);
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		char	   *origin = spi_text(0, 2);

		out->has_ts = !isnull;
		out->ts = isnull ? DT_NOBEGIN : DatumGetTimestampTz(d);
		if (origin == NULL || origin[0] == '\0')
			out->node = pstrdup(local_name);
		else if (strncmp(origin, origin_prefix, strlen(origin_prefix)) == 0)
			out->node = pstrdup(origin + strlen(origin_prefix));
		else
			out->node = pstrdup(origin);
	}
}

static void
record_conflict(const char *kind, AaRel *r, LogicalRepTupleData *keytup, LogicalRepTupleData *remote,
				LocalRow *local, const char *winner)
{
	Oid			types[11];
	Datum		values[11];
	char		nulls[11];
	const char *texts[11];

	texts[0] = peer_name;
	texts[1] = kind;
	texts[2] = r->qualname;
	texts[3] = tuple_text(r, keytup, true);
	texts[4] = local->found ? local->text : NULL;
	texts[5] = remote ? tuple_text(r, remote, false) : NULL;
	texts[6] = local->found ? local->node : NULL;
	texts[7] = NULL;
	texts[8] = NULL;
	texts[9] = "last_writer_wins";
	texts[10] = winner;
	for (int i = 0; i < 11; i++)
	{
		types[i] = TEXTOID;
		values[i] = texts[i] ? CStringGetTextDatum(texts[i]) : (Datum) 0;
		nulls[i] = texts[i] ? ' ' : 'n';
	}
	types[7] = TIMESTAMPTZOID;
	values[7] = TimestampTzGetDatum(local->ts);
	nulls[7] = local->found && local->has_ts ? ' ' : 'n';
	types[8] = TIMESTAMPTZOID;
	values[8] = TimestampTzGetDatum(remote_commit_ts);
	nulls[8] = ' ';
	spi_exec("INSERT INTO pgvigil_aa.conflicts (peer, kind, relation, key, local_row, remote_row, local_origin,"
			 " local_commit_ts, remote_commit_ts, policy, winner)"
			 " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
			 11, types, values, nulls, 1);
}

/* Does the incoming change of this peer win over the local version? A row
 * this peer wrote last is no conflict: its changes arrive in order. */
static bool
remote_wins(LocalRow *local, bool *conflict)
{
	*conflict = strcmp(local->node, peer_name) != 0;
	if (!*conflict)
		return true;
	return aa_remote_wins_lww(local->has_ts ? local->ts : DT_NOBEGIN, local->node, remote_commit_ts, peer_name);
}

/* ---- the changes */

static void
do_update(AaRel *r, LogicalRepTupleData *keytup, LogicalRepTupleData *newtup)
{
	Stmt		st;
	bool		first = true;

	stmt_init(&st, 2 * r->rel->natts);
	appendStringInfo(&st.sql, "UPDATE ONLY %s aa_l SET ", r->qualname);
	for (int i = 0; i < r->rel->natts; i++)
	{
		if (newtup->colstatus[i] == LOGICALREP_COLUMN_UNCHANGED)
			continue;
		if (!first)
			appendStringInfoString(&st.sql, ", ");
		first = false;
		appendStringInfo(&st.sql, "%s = ", quote_identifier(r->rel->attnames[i]));
		stmt_param(&st, r, newtup, i);
	}
	if (first)
		return;					/* every column unchanged */
	stmt_key_where(&st, r, keytup);
	spi_exec(st.sql.data, st.n, st.types, st.values, st.nulls, -1);
}

static void
apply_insert(StringInfo s)
{
	LogicalRepTupleData newtup;
	AaRel	   *r = get_rel(logicalrep_read_insert(s, &newtup));
	LocalRow	local;
	bool		conflict,
				wins;

	read_local(r, &newtup, &local);
	if (!local.found)
	{
		Stmt		st;

		stmt_init(&st, r->rel->natts);
		appendStringInfo(&st.sql, "INSERT INTO %s AS aa_l (", r->qualname);
		for (int i = 0; i < r->rel->natts; i++)
			appendStringInfo(&st.sql, "%s%s", i ? ", " : "", quote_identifier(r->rel->attnames[i]));
		appendStringInfoString(&st.sql, ") VALUES (");
		for (int i = 0; i < r->rel->natts; i++)
		{
			if (i)
				appendStringInfoString(&st.sql, ", ");
			stmt_param(&st, r, &newtup, i);
		}
		/* a local transaction may insert the same key meanwhile: then it is
		 * read again, committed, and resolved like any other */
		appendStringInfoString(&st.sql, ") ON CONFLICT DO NOTHING");
		spi_exec(st.sql.data, st.n, st.types, st.values, st.nulls, -1);
		if (SPI_processed == 1)
			return;
		PopActiveSnapshot();
		PushActiveSnapshot(GetTransactionSnapshot());
		read_local(r, &newtup, &local);
		if (!local.found)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("pgvigil_aa: a row inserted by peer \"%s\" into %s conflicts on a unique index other than its key",
							peer_name, r->qualname),
					 errdetail("Key %s. Conflicts on other unique indexes are not resolved yet: the apply from this peer stops here.",
							   tuple_text(r, &newtup, true))));
	}
	/* the key exists here already: the newer insert becomes the row */
	wins = remote_wins(&local, &conflict);
	if (wins)
		do_update(r, &newtup, &newtup);
	if (conflict)
		record_conflict("insert_exists", r, &newtup, &newtup, &local, wins ? "remote" : "local");
}

static void
apply_update(StringInfo s)
{
	bool		has_old;
	LogicalRepTupleData oldtup,
				newtup;
	AaRel	   *r = get_rel(logicalrep_read_update(s, &has_old, &oldtup, &newtup));
	LogicalRepTupleData *keytup = has_old ? &oldtup : &newtup;
	LocalRow	local;
	bool		conflict;

	read_local(r, keytup, &local);
	if (!local.found)
	{
		/* deleted here (or never inserted): the update is not applied, and it says so */
		record_conflict("update_missing", r, keytup, &newtup, &local, "local");
		return;
	}
	if (remote_wins(&local, &conflict))
	{
		/* an unchanged (TOASTed) value of the peer's is not sent: over another
		 * node's version it would leave that node's value, not the peer's */
		for (int i = 0; conflict && i < newtup.ncols; i++)
			if (newtup.colstatus[i] == LOGICALREP_COLUMN_UNCHANGED)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("pgvigil_aa: an update from peer \"%s\" of %s (%s) conflicts with another node's version"
								" and leaves column \"%s\" out (unchanged, stored out of line)",
								peer_name, r->qualname, tuple_text(r, keytup, true), r->rel->attnames[i]),
						 errdetail("Such conflicts are not resolved yet: the apply from this peer stops here.")));
		do_update(r, keytup, &newtup);
	}
	else
		record_conflict("update_update", r, keytup, &newtup, &local, "local");
}

static void
apply_delete(StringInfo s)
{
	LogicalRepTupleData oldtup;
	AaRel	   *r = get_rel(logicalrep_read_delete(s, &oldtup));
	LocalRow	local;
	bool		conflict;

	read_local(r, &oldtup, &local);
	if (!local.found)
	{
		record_conflict("delete_missing", r, &oldtup, NULL, &local, "local");
		return;
	}
	if (remote_wins(&local, &conflict))
	{
		Stmt		st;

		stmt_init(&st, r->rel->natts);
		appendStringInfo(&st.sql, "DELETE FROM ONLY %s aa_l", r->qualname);
		stmt_key_where(&st, r, &oldtup);
		spi_exec(st.sql.data, st.n, st.types, st.values, st.nulls, -1);
	}
	else
		record_conflict("delete_update", r, &oldtup, NULL, &local, "local");
}

static void
apply_truncate(StringInfo s)
{
	bool		cascade,
				restart_seqs;
	List	   *relids = logicalrep_read_truncate(s, &cascade, &restart_seqs);
	ListCell   *lc;
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "TRUNCATE ONLY ");
	foreach(lc, relids)
	{
		AaRel	   *r = get_rel(lfirst_oid(lc));

		appendStringInfo(&sql, "%s%s", lc == list_head(relids) ? "" : ", ", r->qualname);
	}
	appendStringInfo(&sql, "%s%s", restart_seqs ? " RESTART IDENTITY" : "", cascade ? " CASCADE" : "");
	spi_exec(sql.data, 0, NULL, NULL, NULL, -1);
}

/* ---- transactions and the stream */

static void
begin_remote(StringInfo s)
{
	LogicalRepBeginData begin;

	logicalrep_read_begin(s, &begin);
	remote_commit_ts = begin.committime;
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MemoryContextSwitchTo(ApplyMessageCxt);
	in_remote_txn = true;
}

static void
commit_remote(StringInfo s)
{
	LogicalRepCommitData commit;

	logicalrep_read_commit(s, &commit);
	if (!in_remote_txn)
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" sent COMMIT outside a transaction", peer_name)));
	SPI_finish();
	/* the origin's progress and the remote commit time go into this very commit */
	replorigin_session_origin_lsn = commit.end_lsn;
	replorigin_session_origin_timestamp = commit.committime;
	CommitTransactionCommand();
	MemoryContextSwitchTo(ApplyMessageCxt);
	pgstat_report_stat(false);
	last_applied = commit.end_lsn;
	in_remote_txn = false;
}

/* A change runs with a snapshot of its own: it sees what committed here
 * before it (the local version it is compared with) and the changes of its
 * transaction before it. */
static void
apply_change(void (*apply) (StringInfo), StringInfo s)
{
	MemoryContext old = MemoryContextSwitchTo(ChangeCxt);

	PushActiveSnapshot(GetTransactionSnapshot());
	apply(s);
	PopActiveSnapshot();
	if (SPI_tuptable)
		SPI_freetuptable(SPI_tuptable);
	MemoryContextSwitchTo(old);
	/* (a change's memory goes with it: a large transaction does not pile it up) */
	MemoryContextReset(ChangeCxt);
}

static void
apply_dispatch(StringInfo s)
{
	char		action = pq_getmsgbyte(s);

	if (!in_remote_txn && action != LOGICAL_REP_MSG_BEGIN && action != LOGICAL_REP_MSG_RELATION &&
		action != LOGICAL_REP_MSG_TYPE && action != LOGICAL_REP_MSG_ORIGIN)
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" sent a change outside a transaction", peer_name)));
	switch (action)
	{
		case LOGICAL_REP_MSG_BEGIN:
			begin_remote(s);
			break;
		case LOGICAL_REP_MSG_COMMIT:
			commit_remote(s);
			break;
		case LOGICAL_REP_MSG_RELATION:
			handle_relation(s);
			break;
		case LOGICAL_REP_MSG_TYPE:
			{
				LogicalRepTyp typ;

				logicalrep_read_typ(s, &typ);
				break;
			}
		case LOGICAL_REP_MSG_ORIGIN:
			{
				XLogRecPtr	lsn;

				(void) logicalrep_read_origin(s, &lsn);
				break;
			}
		case LOGICAL_REP_MSG_INSERT:
			apply_change(apply_insert, s);
			break;
		case LOGICAL_REP_MSG_UPDATE:
			apply_change(apply_update, s);
			break;
		case LOGICAL_REP_MSG_DELETE:
			apply_change(apply_delete, s);
			break;
		case LOGICAL_REP_MSG_TRUNCATE:
			apply_change(apply_truncate, s);
			break;
		default:
			ereport(ERROR,
					(errmsg("pgvigil_aa: peer \"%s\" sent an unexpected message \"%c\"", peer_name, action)));
	}
}

/* What this node has applied, so the peer's slot keeps no more WAL than
 * needed: while no remote transaction is open, everything received. */
static void
send_feedback(WalReceiverConn *wrconn, bool force)
{
	static TimestampTz last_sent_at = 0;
	static XLogRecPtr last_sent = InvalidXLogRecPtr;
	XLogRecPtr	pos = in_remote_txn ? last_applied : Max(last_applied, last_received);
	TimestampTz now = GetCurrentTimestamp();

	if (!force && pos == last_sent && !TimestampDifferenceExceeds(last_sent_at, now, FEEDBACK_INTERVAL_MS))
		return;
	resetStringInfo(reply_message);
	pq_sendbyte(reply_message, 'r');
	pq_sendint64(reply_message, pos);	/* written */
	pq_sendint64(reply_message, pos);	/* flushed */
	pq_sendint64(reply_message, pos);	/* applied */
	pq_sendint64(reply_message, now);
	pq_sendbyte(reply_message, false);
	walrcv_send(wrconn, reply_message->data, reply_message->len);
	last_sent = pos;
	last_sent_at = now;
}

static void
read_setup(char **conninfo, char **slot, RepOriginId *origin)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char		originname[NAMEDATALEN];

	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	values[0] = CStringGetTextDatum(peer_name);
	spi_exec("SELECT conninfo, slot_name FROM pgvigil_aa.peers WHERE name = $1", 1, types, values, NULL, -1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" is not in pgvigil_aa.peers", peer_name)));
	*conninfo = MemoryContextStrdup(ApplyContext, spi_text(0, 1));
	*slot = MemoryContextStrdup(ApplyContext, spi_text(0, 2));
	spi_exec("SELECT name FROM pgvigil_aa.local_node", 0, NULL, NULL, NULL, -1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errmsg("pgvigil_aa: this node has no name in pgvigil_aa.local_node")));
	strlcpy(local_name, spi_text(0, 1), NAMEDATALEN);
	if (strcmp(local_name, peer_name) == 0)
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" has this node's own name", peer_name)));
	SPI_finish();
	PopActiveSnapshot();
	snprintf(originname, sizeof(originname), "%s%s", origin_prefix, peer_name);
	*origin = replorigin_by_name(originname, true);
	if (*origin == InvalidRepOriginId)
		*origin = replorigin_create(originname);
	CommitTransactionCommand();
}

/* The tie-break compares node names: the peer must call itself what this
 * node calls it, or two nodes could pick different winners. */
static void
check_peer_name(WalReceiverConn *wrconn)
{
	Oid			types[1] = {TEXTOID};
	WalRcvExecResult *res = walrcv_exec(wrconn, "SELECT name FROM pgvigil_aa.local_node", 1, types);
	TupleTableSlot *slot;
	bool		isnull;
	char	   *name;

	if (res->status != WALRCV_OK_TUPLES)
		ereport(ERROR,
				(errmsg("pgvigil_aa: cannot read the name of peer \"%s\": %s", peer_name,
						res->err ? res->err : "no answer")));
	slot = MakeSingleTupleTableSlot(res->tupledesc, &TTSOpsMinimalTuple);
	if (!tuplestore_gettupleslot(res->tuplestore, true, false, slot))
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" has no name in its pgvigil_aa.local_node", peer_name)));
	name = TextDatumGetCString(slot_getattr(slot, 1, &isnull));
	if (strcmp(name, peer_name) != 0)
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" calls itself \"%s\"", peer_name, name),
				 errhint("Name it in pgvigil_aa.peers as it names itself in its pgvigil_aa.local_node.")));
	ExecDropSingleTupleTableSlot(slot);
	walrcv_clear_result(res);
}

void
pgvigil_aa_apply_main(Datum arg)
{
	char	   *conninfo,
			   *slot,
			   *err = NULL;
	RepOriginId origin;
	WalReceiverConn *wrconn;
	WalRcvStreamOptions options;
	HASHCTL		ctl;

	strlcpy(peer_name, MyBgworkerEntry->bgw_extra, NAMEDATALEN);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);

	ApplyContext = AllocSetContextCreate(TopMemoryContext, "pgvigil_aa apply", ALLOCSET_DEFAULT_SIZES);
	ApplyMessageCxt = AllocSetContextCreate(ApplyContext, "pgvigil_aa apply message", ALLOCSET_DEFAULT_SIZES);
	ChangeCxt = AllocSetContextCreate(ApplyContext, "pgvigil_aa apply change", ALLOCSET_DEFAULT_SIZES);
	/*
	 * As PostgreSQL's own apply worker: local triggers and foreign keys do not
	 * fire for applied rows (the peer ran them), commits are durable before
	 * they are confirmed to the peer, and nothing of the database's own
	 * settings changes how rows are matched or locked.
	 */
	SetConfigOption("session_replication_role", "replica", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	read_setup(&conninfo, &slot, &origin);
	replorigin_session_setup(origin);
	replorigin_session_origin = origin;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(LogicalRepRelId);
	ctl.entrysize = sizeof(AaRel);
	ctl.hcxt = ApplyContext;
	relations = hash_create("pgvigil_aa apply relations", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	{
		MemoryContext old = MemoryContextSwitchTo(ApplyContext);

		reply_message = makeStringInfo();
		MemoryContextSwitchTo(old);
	}

	load_file("libpqwalreceiver", false);
	wrconn = walrcv_connect(conninfo, true, "pgvigil_aa_apply", &err);
	if (wrconn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("pgvigil_aa: cannot connect to peer \"%s\": %s", peer_name, err)));
	/* (the answer's row type is built from the catalogs: in a transaction) */
	StartTransactionCommand();
	check_peer_name(wrconn);
	CommitTransactionCommand();
	memset(&options, 0, sizeof(options));
	options.logical = true;
	options.startpoint = replorigin_session_get_progress(false);
	options.slotname = slot;
	options.proto.logical.proto_version = LOGICALREP_PROTO_VERSION_NUM;
	/* (the plugin has no publications; libpqwalreceiver names at least one) */
	options.proto.logical.publication_names = list_make1(makeString("pgvigil_aa"));
	if (!walrcv_startstreaming(wrconn, &options))
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" did not start streaming from slot \"%s\"", peer_name, slot)));
	last_applied = options.startpoint;
	ereport(LOG,
			(errmsg("pgvigil_aa: applying from peer \"%s\" (slot \"%s\") from %X/%X", peer_name, slot,
					LSN_FORMAT_ARGS(options.startpoint))));

	MemoryContextSwitchTo(ApplyMessageCxt);
	for (;;)
	{
		pgsocket	fd = PGINVALID_SOCKET;
		char	   *buf;
		int			len;
		int			rc;

		CHECK_FOR_INTERRUPTS();
		len = walrcv_receive(wrconn, &buf, &fd);
		while (len != 0)
		{
			StringInfoData s;
			char		kind;

			if (len < 0)
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("pgvigil_aa: the stream from peer \"%s\" ended", peer_name)));
			s.data = buf;
			s.len = len;
			s.cursor = 0;
			s.maxlen = -1;
			kind = pq_getmsgbyte(&s);
			if (kind == 'w')
			{
				XLogRecPtr	start = pq_getmsgint64(&s);
				XLogRecPtr	end = pq_getmsgint64(&s);

				(void) pq_getmsgint64(&s);	/* the peer's send time */
				last_received = Max(last_received, Max(start, end));
				apply_dispatch(&s);
			}
			else if (kind == 'k')
			{
				XLogRecPtr	end = pq_getmsgint64(&s);
				bool		reply;

				(void) pq_getmsgint64(&s);
				reply = pq_getmsgbyte(&s);
				last_received = Max(last_received, end);
				send_feedback(wrconn, reply);
			}
			if (!in_remote_txn)
				MemoryContextReset(ApplyMessageCxt);
			len = walrcv_receive(wrconn, &buf, &fd);
		}
		send_feedback(wrconn, false);
		rc = WaitLatchOrSocket(MyLatch, WL_SOCKET_READABLE | WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   fd, FEEDBACK_INTERVAL_MS, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
}
