/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_direct.c
 *	  A peer's row changes applied through the table and index access
 *	  methods, as PostgreSQL's own apply worker does, without a statement.
 *
 * Most changes meet no conflict: the row is found by its key, its version
 * was written by the peer (or seen by it), and the change is applied as
 * sent.  Planning and starting an SPI statement for each of them, and for
 * the read of the local version before it, cost the worker most of its
 * time.  Here the row is found and locked by an index scan of the key
 * (what SELECT ... FOR UPDATE does: a row being written is waited for, a
 * row changed meanwhile looked up again), the
 * version's writer is read from the same tuple, and the change goes through
 * ExecSimpleRelationUpdate/Delete or a speculative insert (what INSERT ...
 * ON CONFLICT DO NOTHING does).  Whatever is not that simple (a conflict, a
 * row missing, a tombstone) is left to the statements of
 * pgvigil_aa_change.c, which decide from what they read again.
 *
 * A table qualifies when its changes mean the same here as through a
 * statement: a plain table whose every column the peer sends, with no
 * generated column, no rule, no unique index besides its key, and no
 * trigger firing for the apply (session_replication_role = replica) other
 * than the tombstone's, which is an AFTER trigger and fires at the end of
 * each change as it would after a statement.  This is checked when the
 * table's executor state opens, once per remote transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pgvigil_aa_apply.h"
#include "pgvigil_aa_direct.h"

typedef enum
{
	DIRECT_CLOSED,				/* not used yet in this transaction */
	DIRECT_OPEN,
	DIRECT_UNUSABLE				/* statements, for the rest of the transaction */
} DirectState;

struct AaDirectRel
{
	Oid			relid;
	LogicalRepRelation *remote;
	AttrNumber *localatt;		/* per remote column */
	Oid		   *typid;			/* the local column's type, when prepared */
	FmgrInfo   *input;			/* its input function */
	Oid		   *ioparam;
	int32	   *typmod;
	bool	   *always_identity;	/* GENERATED ALWAYS AS IDENTITY here */
	int			natts;			/* the local table's columns, when prepared */
	bool		said;			/* why its changes take the statements, logged */

	/* this transaction's */
	DirectState state;
	Relation	rel;
	Oid			keyindex;
	EState	   *estate;
	ResultRelInfo *rri;
	EPQState	epq;
	/* the key's index scan, kept for the transaction: its equality keys
	 * (their values set at each look) and the remote column of each */
	IndexScanDesc scan;
	SnapshotData dirty;
	int			nkeys;
	ScanKeyData skey[INDEX_MAX_KEYS];
	int			key_remote[INDEX_MAX_KEYS];
	TupleTableSlot *local;		/* the row found and locked */
	TupleTableSlot *newslot;	/* the row to write */
	TupleTableSlot *tombslot;
	/* the table's own tombstone (a TRUNCATE's): read once per transaction,
	 * as none can be written while the transaction holds the table */
	bool		table_tomb_read;
	bool		has_table_tomb;
	TransactionId table_tomb_xmin;
	AaDirectRel *next_used;
};

/* the tables used in this transaction */
static AaDirectRel *used = NULL;

/* pgvigil_aa.tombstones and its key, opened once per transaction */
static Relation tomb_rel = NULL;
static Relation tomb_index = NULL;

AaDirectRel *
aa_direct_prepare(Oid relid, LogicalRepRelation *remote, const AttrNumber *localatt)
{
	AaDirectRel *d = palloc0(sizeof(AaDirectRel));
	Relation	rel = table_open(relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);

	d->relid = relid;
	d->remote = remote;
	d->natts = desc->natts;
	d->localatt = palloc(sizeof(AttrNumber) * remote->natts);
	d->typid = palloc(sizeof(Oid) * remote->natts);
	d->input = palloc(sizeof(FmgrInfo) * remote->natts);
	d->ioparam = palloc(sizeof(Oid) * remote->natts);
	d->typmod = palloc(sizeof(int32) * remote->natts);
	d->always_identity = palloc(sizeof(bool) * remote->natts);
	for (int i = 0; i < remote->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, localatt[i] - 1);
		Oid			infunc;

		d->localatt[i] = localatt[i];
		d->typid[i] = att->atttypid;
		d->typmod[i] = att->atttypmod;
		d->always_identity[i] = att->attidentity == ATTRIBUTE_IDENTITY_ALWAYS;
		getTypeInputInfo(att->atttypid, &infunc, &d->ioparam[i]);
		fmgr_info(infunc, &d->input[i]);
	}
	table_close(rel, NoLock);
	return d;
}

/* Why the table, as it is now, does not qualify (see the header comment);
 * NULL when it does. */
static const char *
not_qualified(AaDirectRel *d, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (rel->rd_rel->relkind != RELKIND_RELATION)
		return "not a plain table";
	if (rel->rd_rules != NULL)
		return "it has a rule";
	if (!OidIsValid(RelationGetReplicaIndex(rel)))
		return "no key index";
	if (desc->natts != d->natts)
		return "its columns changed";
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);
		bool		sent = false;

		if (att->attisdropped)
			continue;
		if (att->attgenerated)
			return "a generated column";
		for (int i = 0; i < d->remote->natts; i++)
			if (d->localatt[i] == att->attnum)
				sent = att->atttypid == d->typid[i] && att->atttypmod == d->typmod[i];
		if (!sent)
			return "a column here that the peer does not send";
	}
	if (rel->trigdesc)
		for (int t = 0; t < rel->trigdesc->numtriggers; t++)
		{
			Trigger    *trig = &rel->trigdesc->triggers[t];
			bool		tombstone = strcmp(trig->tgname, "pgvigil_aa_tombstone") == 0 &&
				TRIGGER_FOR_ROW(trig->tgtype) && TRIGGER_FOR_AFTER(trig->tgtype) &&
				!TRIGGER_FOR_INSERT(trig->tgtype) && !TRIGGER_FOR_UPDATE(trig->tgtype);
			bool		truncate = strcmp(trig->tgname, "pgvigil_aa_tombstone_truncate") == 0 &&
				!TRIGGER_FOR_ROW(trig->tgtype);

			if ((trig->tgenabled == TRIGGER_FIRES_ALWAYS || trig->tgenabled == TRIGGER_FIRES_ON_REPLICA) &&
				!tombstone && !truncate)
				return "a trigger that fires for the apply";
		}
	return NULL;
}

/* Once per description of the table: why its changes take the statements
 * (slower: an operator wants to know). */
static void
say_statements(AaDirectRel *d, Relation rel, const char *why)
{
	if (d->said)
		return;
	d->said = true;
	ereport(LOG,
			(errmsg("pgvigil_aa: the changes of table \"%s.%s\" from peer \"%s\" go through statements: %s",
					get_namespace_name(RelationGetNamespace(rel)), RelationGetRelationName(rel), aa_peer_name, why)));
}

static void
close_one(AaDirectRel *d)
{
	if (d->state == DIRECT_OPEN)
	{
		if (d->scan)
			index_endscan(d->scan);
		EvalPlanQualEnd(&d->epq);
		ExecCloseResultRelations(d->estate);
		ExecCloseRangeTableRelations(d->estate);
		ExecResetTupleTable(d->estate->es_tupleTable, false);
		FreeExecutorState(d->estate);
		table_close(d->rel, NoLock);
	}
	d->estate = NULL;
	d->rri = NULL;
	d->rel = NULL;
	d->scan = NULL;
	d->state = DIRECT_CLOSED;
}

/* The key's equality scan keys, and the scan (false: a key column the
 * peer does not send, or no equality operator: statements). */
static bool
begin_key_scan(AaDirectRel *d, Relation keyrel)
{
	d->nkeys = IndexRelationGetNumberOfKeyAttributes(keyrel);
	for (int i = 0; i < d->nkeys; i++)
	{
		Oid			optype = keyrel->rd_opcintype[i];
		Oid			op = get_opfamily_member(keyrel->rd_opfamily[i], optype, optype, BTEqualStrategyNumber);

		d->key_remote[i] = -1;
		for (int r = 0; r < d->remote->natts; r++)
			if (d->localatt[r] == keyrel->rd_index->indkey.values[i])
				d->key_remote[i] = r;
		if (!OidIsValid(op) || d->key_remote[i] < 0)
			return false;
		ScanKeyInit(&d->skey[i], i + 1, BTEqualStrategyNumber, get_opcode(op), (Datum) 0);
		d->skey[i].sk_collation = keyrel->rd_indcollation[i];
	}
	InitDirtySnapshot(d->dirty);
	d->scan = index_beginscan(d->rel, keyrel, &d->dirty, d->nkeys, 0);
	return true;
}

/* The table's executor state for this transaction (false: statements). */
static bool
open_direct(AaDirectRel *d)
{
	MemoryContext old;
	RangeTblEntry *rte;
	TupleDesc	desc;
	bool		ok = true;
	const char *why = NULL;

	if (d->state != DIRECT_CLOSED)
		return d->state == DIRECT_OPEN;
	d->scan = NULL;
	d->next_used = used;
	used = d;
	old = MemoryContextSwitchTo(TopTransactionContext);
	d->rel = table_open(d->relid, RowExclusiveLock);
	why = not_qualified(d, d->rel);
	if (why)
	{
		say_statements(d, d->rel, why);
		table_close(d->rel, NoLock);
		d->rel = NULL;
		d->state = DIRECT_UNUSABLE;
		MemoryContextSwitchTo(old);
		return false;
	}
	desc = RelationGetDescr(d->rel);
	d->keyindex = RelationGetReplicaIndex(d->rel);
	d->estate = CreateExecutorState();
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = d->relid;
	rte->relkind = RELKIND_RELATION;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(d->estate, list_make1(rte));
	d->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(d->rri, d->rel, 1, NULL, 0);
	d->estate->es_opened_result_relations = lappend(d->estate->es_opened_result_relations, d->rri);
	ExecOpenIndices(d->rri, true);
	d->state = DIRECT_OPEN;
	/* the key, immediate (ON CONFLICT refuses a deferrable arbiter), and no
	 * other unique or exclusion index: a row in the way of a change on one
	 * is a conflict pgvigil_aa_change.c resolves */
	for (int i = 0; i < d->rri->ri_NumIndices; i++)
	{
		Form_pg_index index = d->rri->ri_IndexRelationDescs[i]->rd_index;

		if (index->indexrelid == d->keyindex ? !index->indimmediate : (index->indisunique || index->indisexclusion))
		{
			ok = false;
			why = index->indexrelid == d->keyindex ? "its key is deferrable" : "a unique index besides the key";
		}
	}
	for (int i = 0; i < d->rri->ri_NumIndices && ok; i++)
		if (RelationGetRelid(d->rri->ri_IndexRelationDescs[i]) == d->keyindex)
			ok = begin_key_scan(d, d->rri->ri_IndexRelationDescs[i]);
	if (ok && d->scan == NULL)
		ok = false;
	if (!ok && !why)
		why = "a key column the peer does not send, or one without an equality operator";
	EvalPlanQualInit(&d->epq, d->estate, NULL, NIL, -1);
	d->newslot = ExecInitExtraTupleSlot(d->estate, desc, &TTSOpsVirtual);
	d->local = table_slot_create(d->rel, &d->estate->es_tupleTable);
	d->tombslot = NULL;
	d->table_tomb_read = false;
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		say_statements(d, d->rel, why);
		close_one(d);
		d->state = DIRECT_UNUSABLE;
	}
	return ok;
}

/* column i of the peer's tuple as a value of the local column's type (the
 * column's modifier applies, as to an assignment) */
static Datum
remote_value(AaDirectRel *d, LogicalRepTupleData *tup, int i, bool *isnull)
{
	*isnull = tup->colstatus[i] == LOGICALREP_COLUMN_NULL;
	/* (a NULL too: a domain's input function checks its NOT NULL, as the
	 * statement's cast would; a strict one returns at once) */
	if (*isnull)
		return InputFunctionCall(&d->input[i], NULL, d->ioparam[i], d->typmod[i]);
	if (tup->colstatus[i] != LOGICALREP_COLUMN_TEXT)
		elog(ERROR, "pgvigil_aa: unexpected column status '%c'", tup->colstatus[i]);
	return InputFunctionCall(&d->input[i], tup->colvalues[i].data, d->ioparam[i], d->typmod[i]);
}

bool
aa_direct_find(AaDirectRel *d, LogicalRepTupleData *keytup, TransactionId *xmin, bool *usable)
{
	MemoryContext old;
	bool		found,
				isnull;

	*usable = open_direct(d);
	if (!*usable)
		return false;
	for (int i = 0; i < d->nkeys; i++)
	{
		d->skey[i].sk_argument = remote_value(d, keytup, d->key_remote[i], &isnull);
		if (isnull)
			return false;		/* (a NULL key matches no row) */
	}
	ExecClearTuple(d->local);
	/* (the scan lives for the transaction: what it allocates as it goes,
	 * the dead entries it remembers to mark, with it, not with the change) */
	old = MemoryContextSwitchTo(d->estate->es_query_cxt);
	for (;;)
	{
		TransactionId xwait;
		TM_FailureData tmfd;
		TM_Result	res;

		index_rescan(d->scan, d->skey, d->nkeys, NULL, 0);
		found = index_getnext_slot(d->scan, ForwardScanDirection, d->local);
		if (!found)
			break;
		ExecMaterializeSlot(d->local);
		/* a transaction writing the row: after it ends, look again */
		xwait = TransactionIdIsValid(d->dirty.xmin) ? d->dirty.xmin : d->dirty.xmax;
		if (TransactionIdIsValid(xwait))
		{
			XactLockTableWait(xwait, NULL, NULL, XLTW_None);
			continue;
		}
		PushActiveSnapshot(GetLatestSnapshot());
		res = table_tuple_lock(d->rel, &d->local->tts_tid, GetActiveSnapshot(), d->local, GetCurrentCommandId(false),
							   LockTupleExclusive, LockWaitBlock, 0, &tmfd);
		PopActiveSnapshot();
		if (res == TM_Ok)
			break;
		/* changed or deleted meanwhile: look again */
		if (res != TM_Updated && res != TM_Deleted)
			elog(ERROR, "pgvigil_aa: locking a row of %s to apply a change: %s", RelationGetRelationName(d->rel),
				 res == TM_Invisible ? "the row is invisible" : res == TM_SelfModified ?
				 "the row was changed by this transaction after the lookup" : "unexpected result");
	}
	/* the index page left (a pin held between changes would hold up a
	 * VACUUM's cleanup lock, unseen by the deadlock detector) */
	index_rescan(d->scan, d->skey, d->nkeys, NULL, 0);
	MemoryContextSwitchTo(old);
	if (found)
		*xmin = DatumGetTransactionId(slot_getsysattr(d->local, MinTransactionIdAttributeNumber, &isnull));
	return found;
}

/* A change is a step: its own command id, its AFTER triggers fired at its
 * end (the tombstone of a delete), as for a statement. */
static void
step_begin(AaDirectRel *d)
{
	d->estate->es_output_cid = GetCurrentCommandId(true);
	d->estate->es_snapshot = GetActiveSnapshot();
	AfterTriggerBeginQuery();
}

void
aa_direct_release(AaDirectRel *d)
{
	if (d->state == DIRECT_OPEN)
		ExecClearTuple(d->local);
}

static void
step_end(AaDirectRel *d)
{
	/* (as the executor fires them: what the triggers keep between calls,
	 * their function's cache, lives with the executor state, not with the
	 * change) */
	MemoryContext old = MemoryContextSwitchTo(d->estate->es_query_cxt);

	AfterTriggerEndQuery(d->estate);
	MemoryContextSwitchTo(old);
	ExecClearTuple(d->local);	/* (its heap page's pin) */
	ResetPerTupleExprContext(d->estate);
	CommandCounterIncrement();
}

void
aa_direct_update_found(AaDirectRel *d, LogicalRepTupleData *newtup)
{
	int			natts = RelationGetDescr(d->rel)->natts;
	bool		changed = false;

	Assert(d->state == DIRECT_OPEN && !TTS_EMPTY(d->local));
	slot_getallattrs(d->local);
	ExecClearTuple(d->newslot);
	memcpy(d->newslot->tts_values, d->local->tts_values, sizeof(Datum) * natts);
	memcpy(d->newslot->tts_isnull, d->local->tts_isnull, sizeof(bool) * natts);
	for (int i = 0; i < d->remote->natts; i++)
	{
		AttrNumber	a = d->localatt[i] - 1;

		/* (unchanged: stored out of line and not sent, kept; a GENERATED
		 * ALWAYS identity value is kept too, as the statements keep it) */
		if (newtup->colstatus[i] == LOGICALREP_COLUMN_UNCHANGED || d->always_identity[i])
			continue;
		d->newslot->tts_values[a] = remote_value(d, newtup, i, &d->newslot->tts_isnull[a]);
		changed = true;
	}
	if (!changed)
	{
		ExecClearTuple(d->local);
		return;
	}
	ExecStoreVirtualTuple(d->newslot);
	step_begin(d);
	ExecSimpleRelationUpdate(d->rri, d->estate, &d->epq, d->local, d->newslot);
	step_end(d);
}

void
aa_direct_delete_found(AaDirectRel *d)
{
	Assert(d->state == DIRECT_OPEN && !TTS_EMPTY(d->local));
	step_begin(d);
	ExecSimpleRelationDelete(d->rri, d->estate, &d->epq, d->local);
	step_end(d);
}

/*
 * The speculative insert of INSERT ... ON CONFLICT DO NOTHING: the unique
 * indexes are checked first, then the row goes in with a token that a
 * concurrent inserter of the same key waits on; when one got in between
 * the check and the index entry, the row is taken back and it all starts
 * again (then the check sees the other row).
 */
bool
aa_direct_insert(AaDirectRel *d, LogicalRepTupleData *tup)
{
	Relation	rel = d->rel;
	bool		inserted = false;

	Assert(d->state == DIRECT_OPEN);
	ExecClearTuple(d->newslot);
	for (int a = 0; a < RelationGetDescr(rel)->natts; a++)
		d->newslot->tts_isnull[a] = true;	/* (dropped columns) */
	for (int i = 0; i < d->remote->natts; i++)
	{
		AttrNumber	a = d->localatt[i] - 1;

		d->newslot->tts_values[a] = remote_value(d, tup, i, &d->newslot->tts_isnull[a]);
	}
	ExecStoreVirtualTuple(d->newslot);
	step_begin(d);
	if (rel->rd_att->constr)
		ExecConstraints(d->rri, d->newslot, d->estate);
	if (rel->rd_rel->relispartition)
		ExecPartitionCheck(d->rri, d->newslot, d->estate, true);
	for (;;)
	{
		ItemPointerData conflict;
		TransactionId xid;
		uint32		token;
		bool		in_way = false;
		List	   *recheck;

		if (!ExecCheckIndexConstraints(d->rri, d->newslot, d->estate, &conflict, NIL))
			break;
		xid = GetCurrentTransactionId();
		token = SpeculativeInsertionLockAcquire(xid);
		table_tuple_insert_speculative(rel, d->newslot, d->estate->es_output_cid, 0, NULL, token);
		recheck = ExecInsertIndexTuples(d->rri, d->newslot, d->estate, false, true, &in_way, NIL);
		table_tuple_complete_speculative(rel, d->newslot, token, !in_way);
		SpeculativeInsertionLockRelease(xid);
		if (!in_way)
		{
			ExecARInsertTriggers(d->estate, d->rri, d->newslot, recheck, NULL);
			list_free(recheck);
			inserted = true;
			break;
		}
		list_free(recheck);
	}
	step_end(d);
	return inserted;
}

/* The writer of the tombstone of key (a text[]), in *xmin; false if none. */
static bool
tombstone_of(AaDirectRel *d, Datum key, Snapshot snap, TransactionId *xmin)
{
	ScanKeyData sk[2];
	IndexScanDesc scan;
	bool		found,
				isnull;

	ScanKeyInit(&sk[0], 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(d->relid));
	ScanKeyInit(&sk[1], 2, BTEqualStrategyNumber, F_ARRAY_EQ, key);
	sk[1].sk_collation = tomb_index->rd_indcollation[1];
	scan = index_beginscan(tomb_rel, tomb_index, snap, 2, 0);
	index_rescan(scan, sk, 2, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, d->tombslot);
	if (found)
		*xmin = DatumGetTransactionId(slot_getsysattr(d->tombslot, MinTransactionIdAttributeNumber, &isnull));
	index_endscan(scan);
	ExecClearTuple(d->tombslot);
	return found;
}

int
aa_direct_tombstones(AaDirectRel *d, Datum key_array, TransactionId *xmins)
{
	Snapshot	snap;
	int			n = 0;

	Assert(d->state == DIRECT_OPEN);
	if (tomb_rel == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
		Oid			nsp = get_namespace_oid("pgvigil_aa", false);

		tomb_rel = table_open(get_relname_relid("tombstones", nsp), AccessShareLock);
		tomb_index = index_open(get_relname_relid("tombstones_pkey", nsp), AccessShareLock);
		MemoryContextSwitchTo(old);
	}
	if (d->tombslot == NULL)
	{
		/* (with the executor state's memory: the change's goes at its end) */
		MemoryContext old = MemoryContextSwitchTo(d->estate->es_query_cxt);

		d->tombslot = table_slot_create(tomb_rel, &d->estate->es_tupleTable);
		MemoryContextSwitchTo(old);
	}
	snap = RegisterSnapshot(GetLatestSnapshot());
	if (tombstone_of(d, key_array, snap, &xmins[n]))
		n++;
	if (!d->table_tomb_read)
	{
		d->has_table_tomb = tombstone_of(d, PointerGetDatum(construct_empty_array(TEXTOID)), snap,
										 &d->table_tomb_xmin);
		d->table_tomb_read = true;
	}
	if (d->has_table_tomb)
		xmins[n++] = d->table_tomb_xmin;
	UnregisterSnapshot(snap);
	return n;
}

void
aa_direct_close_all(void)
{
	AaDirectRel *next;

	for (AaDirectRel *d = used; d; d = next)
	{
		next = d->next_used;
		close_one(d);
		d->next_used = NULL;
	}
	used = NULL;
	if (tomb_rel)
	{
		index_close(tomb_index, NoLock);
		table_close(tomb_rel, NoLock);
	}
	tomb_rel = NULL;
	tomb_index = NULL;
}

void
aa_direct_forget(void)
{
	for (AaDirectRel *d = used; d; d = d->next_used)
	{
		d->state = DIRECT_CLOSED;
		d->estate = NULL;
		d->rel = NULL;
		d->scan = NULL;
	}
	used = NULL;
	tomb_rel = NULL;
	tomb_index = NULL;
}

/*
 * What has been applied from the peer, written into its row of
 * pgvigil_aa.peers in the applying transaction: applied_commit_ts (never
 * back) and applied_lsn.  An UPDATE statement would plan nothing but check
 * the table's constraints again at every commit, from their text; these two
 * columns have none, the other columns stay as they are, and the row is
 * locked first, so a concurrent pause or resume of the peer is waited for.
 * The table's triggers do not fire (the launcher's would, for nothing).
 */
void
aa_direct_note_applied(const char *peer, TimestampTz commit_ts, XLogRecPtr lsn)
{
	/* (looked up once: the extension is not dropped under a running worker
	 * without an error that ends it) */
	static Oid	peers_relid = InvalidOid;
	static int	ts_att,
				lsn_att;
	Relation	rel;
	TupleDesc	desc;
	TupleTableSlot *search,
			   *row,
			   *updated;
	bool		update_indexes;

	if (!OidIsValid(peers_relid))
	{
		peers_relid = get_relname_relid("peers", get_namespace_oid("pgvigil_aa", false));
		ts_att = get_attnum(peers_relid, "applied_commit_ts") - 1;
		lsn_att = get_attnum(peers_relid, "applied_lsn") - 1;
		if (ts_att < 0 || lsn_att < 0)
		{
			peers_relid = InvalidOid;
			elog(ERROR, "pgvigil_aa: pgvigil_aa.peers has no column applied_commit_ts or applied_lsn");
		}
	}
	rel = table_open(peers_relid, RowExclusiveLock);
	desc = RelationGetDescr(rel);
	search = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);
	row = table_slot_create(rel, NULL);
	updated = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);
	for (int a = 0; a < desc->natts; a++)
		search->tts_isnull[a] = true;
	search->tts_values[0] = CStringGetTextDatum(peer);	/* name, its key */
	search->tts_isnull[0] = false;
	ExecStoreVirtualTuple(search);
	if (!RelationFindReplTupleByIndex(rel, RelationGetPrimaryKeyIndex(rel), LockTupleNoKeyExclusive, search, row))
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" is not in pgvigil_aa.peers any more", peer)));
	slot_getallattrs(row);
	memcpy(updated->tts_values, row->tts_values, sizeof(Datum) * desc->natts);
	memcpy(updated->tts_isnull, row->tts_isnull, sizeof(bool) * desc->natts);
	if (row->tts_isnull[ts_att] || DatumGetTimestampTz(row->tts_values[ts_att]) < commit_ts)
	{
		updated->tts_values[ts_att] = TimestampTzGetDatum(commit_ts);
		updated->tts_isnull[ts_att] = false;
	}
	updated->tts_values[lsn_att] = LSNGetDatum(lsn);
	updated->tts_isnull[lsn_att] = false;
	ExecStoreVirtualTuple(updated);
	simple_table_tuple_update(rel, &row->tts_tid, updated, GetActiveSnapshot(), &update_indexes);
	if (update_indexes)
	{
		/* (not a HOT update: the new version needs its index entries) */
		EState	   *estate = CreateExecutorState();
		ResultRelInfo *rri = makeNode(ResultRelInfo);

		InitResultRelInfo(rri, rel, 0, NULL, 0);
		ExecOpenIndices(rri, false);
		list_free(ExecInsertIndexTuples(rri, updated, estate, true, false, NULL, NIL));
		ExecCloseIndices(rri);
		FreeExecutorState(estate);
	}
	ExecDropSingleTupleTableSlot(search);
	ExecDropSingleTupleTableSlot(row);
	ExecDropSingleTupleTableSlot(updated);
	table_close(rel, NoLock);
	CommandCounterIncrement();
}
