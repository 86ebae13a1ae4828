/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_output.c
 *	  Logical decoding output plugin of pgvigil's active-active groups.
 *
 * Each node of a group streams its row changes (INSERT, UPDATE, DELETE,
 * TRUNCATE) to every other node, transaction by transaction in commit order.
 * A change a node applied from a peer carries that peer's replication origin;
 * it is filtered out here, so that it is never sent on: with every node
 * sending only what its own clients wrote, a group of any size has no loops.
 *
 * The messages are PostgreSQL's logical replication protocol (version 1),
 * written with the server's own logicalrep_write_* functions: BEGIN (final
 * LSN, commit time, xid), RELATION and TYPE before a relation's first change
 * in a session (and again after it changed), the changes, COMMIT.  So the
 * stream can be read by logicalrep_read_* on the receiving side, and a
 * built-in subscription can apply it too.  The causality messages a node
 * logs before its clients' writing statements (pgvigil_aa_seen.c) go along
 * as MESSAGE, ahead of the rows they describe, and so do its clients' DDL
 * statements (pgvigil_aa_ddl.c), in their place among the rows.
 *
 * Tables: every permanent table outside the pgvigil_aa schema (the group's
 * own bookkeeping is local to each node).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/defrem.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "replication/logical.h"
#include "replication/logicalproto.h"
#include "replication/origin.h"
#include "replication/output_plugin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "pgvigil_aa_ddl.h"
#include "pgvigil_aa_handover.h"
#include "pgvigil_aa_seen.h"

PG_MODULE_MAGIC;

#define AA_SCHEMA "pgvigil_aa"

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

/* Relations whose RELATION message this session has sent (cleared when one changes). */
typedef struct SentRelation
{
	Oid			relid;			/* hash key */
	bool		valid;
} SentRelation;

static HTAB *sent_relations = NULL;

typedef struct AaOutputData
{
	MemoryContext change_context;	/* reset after each change */
	bool		binary;			/* columns in binary (the receiver asked) */
	bool		begin_pending;	/* BEGIN goes out with the transaction's first change */
	StringInfo	seen;			/* a causality message waiting for that first change */
	XLogRecPtr	seen_lsn;
} AaOutputData;

static void
invalidate_sent_relation(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	SentRelation *entry;

	if (sent_relations == NULL)
		return;
	if (OidIsValid(relid))
	{
		entry = hash_search(sent_relations, &relid, HASH_FIND, NULL);
		if (entry != NULL)
			entry->valid = false;
		return;
	}
	hash_seq_init(&status, sent_relations);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->valid = false;
}

static void
parse_options(List *options, AaOutputData *data)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *elem = lfirst(lc);

		if (strcmp(elem->defname, "proto_version") == 0)
		{
			char	   *v = defGetString(elem);

			if (strtol(v, NULL, 10) < LOGICALREP_PROTO_MIN_VERSION_NUM)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("pgvigil_aa: protocol version %s is not supported", v)));
		}
		else if (strcmp(elem->defname, "binary") == 0)
			data->binary = defGetBoolean(elem);
		else if (strcmp(elem->defname, "streaming") == 0 ||
				 strcmp(elem->defname, "two_phase") == 0 ||
				 strcmp(elem->defname, "publication_names") == 0 ||
				 strcmp(elem->defname, "messages") == 0)
		{
			/*
			 * Accepted and not acted upon: transactions are sent whole at
			 * commit, prepared ones at COMMIT PREPARED, every permanent table
			 * is sent (a receiver applies what it knows).
			 */
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("pgvigil_aa: unknown option \"%s\"", elem->defname)));
	}
}

static void
aa_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
	AaOutputData *data = palloc0(sizeof(AaOutputData));

	data->seen = makeStringInfo();
	data->change_context = AllocSetContextCreate(ctx->context,
												 "pgvigil_aa change",
												 ALLOCSET_DEFAULT_SIZES);
	ctx->output_plugin_private = data;
	opt->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
	opt->receive_rewrites = false;
	if (is_init)
		return;
	parse_options(ctx->output_plugin_options, data);
	if (sent_relations == NULL)
	{
		HASHCTL		hctl;

		hctl.keysize = sizeof(Oid);
		hctl.entrysize = sizeof(SentRelation);
		hctl.hcxt = CacheMemoryContext;
		sent_relations = hash_create("pgvigil_aa sent relations", 64, &hctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		CacheRegisterRelcacheCallback(invalidate_sent_relation, (Datum) 0);
	}
}

static void
aa_shutdown(LogicalDecodingContext *ctx)
{
	AaOutputData *data = ctx->output_plugin_private;

	if (data != NULL)
		MemoryContextDelete(data->change_context);
}

/* What was applied from a peer (it has an origin) is not sent on. */
static bool
aa_filter_by_origin(LogicalDecodingContext *ctx, RepOriginId origin_id)
{
	return origin_id != InvalidRepOriginId;
}

/*
 * BEGIN is sent with the transaction's first replicated change: a transaction
 * with none (catalog changes only, or only tables that are not replicated)
 * sends nothing at all.
 */
static void
aa_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	AaOutputData *data = ctx->output_plugin_private;

	data->begin_pending = true;
	resetStringInfo(data->seen);
}

static void
send_seen(LogicalDecodingContext *ctx, XLogRecPtr lsn, const char *message, Size size)
{
	OutputPluginPrepareWrite(ctx, true);
	logicalrep_write_message(ctx->out, InvalidTransactionId, lsn, true, AA_SEEN_PREFIX, size, message);
	OutputPluginWrite(ctx, true);
}

static void
send_begin_if_pending(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	AaOutputData *data = ctx->output_plugin_private;

	if (!data->begin_pending)
		return;
	data->begin_pending = false;
	OutputPluginPrepareWrite(ctx, true);
	logicalrep_write_begin(ctx->out, txn);
	OutputPluginWrite(ctx, true);
	if (data->seen->len > 0)
		send_seen(ctx, data->seen_lsn, data->seen->data, data->seen->len);
	resetStringInfo(data->seen);
}

/*
 * The causality messages (pgvigil_aa_seen.c) go ahead of the rows of their
 * statement: the first one waits for the transaction's first change, so a
 * transaction with nothing replicated still sends nothing.  Other messages
 * are not the group's.
 */
static void
aa_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr message_lsn, bool transactional,
		   const char *prefix, Size message_size, const char *message)
{
	AaOutputData *data = ctx->output_plugin_private;

	if (!transactional)
		return;
	if (strcmp(prefix, AA_DDL_PREFIX) == 0 || strcmp(prefix, AA_MARK_PREFIX) == 0)
	{
		/* a transaction of DDL alone is sent too, and a switchover's mark */
		send_begin_if_pending(ctx, txn);
		OutputPluginPrepareWrite(ctx, true);
		logicalrep_write_message(ctx->out, InvalidTransactionId, message_lsn, true, prefix, message_size, message);
		OutputPluginWrite(ctx, true);
		return;
	}
	if (strcmp(prefix, AA_SEEN_PREFIX) != 0)
		return;
	if (data->begin_pending)
	{
		resetStringInfo(data->seen);
		appendBinaryStringInfo(data->seen, message, message_size);
		data->seen_lsn = message_lsn;
	}
	else
		send_seen(ctx, message_lsn, message, message_size);
}

static void
aa_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr commit_lsn)
{
	AaOutputData *data = ctx->output_plugin_private;
	bool		empty = data->begin_pending;

	data->begin_pending = false;
	OutputPluginUpdateProgress(ctx, empty);
	if (empty)
		return;
	OutputPluginPrepareWrite(ctx, true);
	logicalrep_write_commit(ctx->out, txn, commit_lsn);
	OutputPluginWrite(ctx, true);
}

/* A permanent table of the group (not one of its own bookkeeping tables). */
static bool
is_replicated(Relation rel)
{
	if (rel->rd_rel->relkind != RELKIND_RELATION ||
		rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
		return false;
	return strcmp(get_namespace_name(RelationGetNamespace(rel)), AA_SCHEMA) != 0;
}

/* RELATION (and TYPE for types that are not built in) before its first change. */
static void
send_relation(LogicalDecodingContext *ctx, Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	bool		found;
	SentRelation *entry = hash_search(sent_relations, &relid, HASH_ENTER, &found);
	TupleDesc	desc = RelationGetDescr(rel);

	if (found && entry->valid)
		return;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->attgenerated || att->atttypid < FirstGenbkiObjectId)
			continue;
		OutputPluginPrepareWrite(ctx, false);
		logicalrep_write_typ(ctx->out, InvalidTransactionId, att->atttypid);
		OutputPluginWrite(ctx, false);
	}
	OutputPluginPrepareWrite(ctx, false);
	logicalrep_write_rel(ctx->out, InvalidTransactionId, rel, NULL);
	OutputPluginWrite(ctx, false);
	entry->valid = true;
}

static TupleTableSlot *
tuple_slot(Relation rel, ReorderBufferTupleBuf *buf)
{
	TupleTableSlot *slot;

	if (buf == NULL)
		return NULL;
	slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);
	ExecStoreHeapTuple(&buf->tuple, slot, false);
	return slot;
}

static void
aa_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Relation rel,
		  ReorderBufferChange *change)
{
	AaOutputData *data = ctx->output_plugin_private;
	MemoryContext old;
	TupleTableSlot *oldslot;
	TupleTableSlot *newslot;

	if (!is_replicated(rel))
		return;
	old = MemoryContextSwitchTo(data->change_context);
	send_begin_if_pending(ctx, txn);
	send_relation(ctx, rel);
	oldslot = tuple_slot(rel, change->data.tp.oldtuple);
	newslot = tuple_slot(rel, change->data.tp.newtuple);
	OutputPluginPrepareWrite(ctx, true);
	switch (change->action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
			logicalrep_write_insert(ctx->out, InvalidTransactionId, rel, newslot, data->binary, NULL);
			break;
		case REORDER_BUFFER_CHANGE_UPDATE:
			logicalrep_write_update(ctx->out, InvalidTransactionId, rel, oldslot, newslot, data->binary, NULL);
			break;
		case REORDER_BUFFER_CHANGE_DELETE:
			if (oldslot == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("pgvigil_aa: a DELETE on table \"%s\" carries no key",
								RelationGetRelationName(rel)),
						 errhint("Give the table a primary key or a replica identity.")));
			logicalrep_write_delete(ctx->out, InvalidTransactionId, rel, oldslot, data->binary, NULL);
			break;
		default:
			Assert(false);
	}
	OutputPluginWrite(ctx, true);
	if (oldslot)
		ExecDropSingleTupleTableSlot(oldslot);
	if (newslot)
		ExecDropSingleTupleTableSlot(newslot);
	MemoryContextSwitchTo(old);
	MemoryContextReset(data->change_context);
}

static void
aa_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, int nrelations,
			Relation relations[], ReorderBufferChange *change)
{
	AaOutputData *data = ctx->output_plugin_private;
	MemoryContext old = MemoryContextSwitchTo(data->change_context);
	Oid		   *relids = palloc0(nrelations * sizeof(Oid));
	int			n = 0;

	for (int i = 0; i < nrelations; i++)
	{
		if (!is_replicated(relations[i]))
			continue;
		send_begin_if_pending(ctx, txn);
		send_relation(ctx, relations[i]);
		relids[n++] = RelationGetRelid(relations[i]);
	}
	if (n > 0)
	{
		OutputPluginPrepareWrite(ctx, true);
		logicalrep_write_truncate(ctx->out, InvalidTransactionId, n, relids,
								  change->data.truncate.cascade,
								  change->data.truncate.restart_seqs);
		OutputPluginWrite(ctx, true);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(data->change_context);
}

void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	cb->startup_cb = aa_startup;
	cb->begin_cb = aa_begin;
	cb->change_cb = aa_change;
	cb->truncate_cb = aa_truncate;
	cb->commit_cb = aa_commit;
	cb->message_cb = aa_message;
	cb->filter_by_origin_cb = aa_filter_by_origin;
	cb->shutdown_cb = aa_shutdown;
}
