/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_change.c
 *	  The row changes of a peer, applied here: conflicts detected, resolved
 *	  by the table's policy and recorded.
 *
 * Rows are applied through SPI, matched on the peer's replica identity
 * columns, which must be this table's too.  Before a change is applied the
 * local version of the row is locked and read, with the commit time and
 * origin of the transaction that wrote it (track_commit_timestamp).  A row
 * this peer wrote last is no conflict: its changes arrive in order.  A row
 * written by another node is a conflict, and so is a change that finds no
 * row or another row on a unique index.  A row that is missing because it
 * was deleted is told apart from one that never arrived by its tombstone
 * (pgvigil_aa_tombstone.c).
 *
 * The ordering policies (last or first writer, node priority) give every
 * node the same winner, so the nodes converge; a delete beats a concurrent
 * update under all three, so a deleted row never comes back.  Every conflict
 * is recorded in pgvigil_aa.conflicts in the applying transaction: both
 * versions, the origins and commit times, the policy and the winner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/commit_ts.h"
#include "access/table.h"
#include "access/transam.h"
#include "catalog/namespace.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "replication/logicalproto.h"
#include "replication/origin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/regproc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"

#include "pgvigil_aa_apply.h"
#include "pgvigil_aa_direct.h"
#include "pgvigil_aa_resolve.h"
#include "pgvigil_aa_seen.h"
#include "pgvigil_aa_shared.h"

/* A unique index of a table other than its key: a remote insert may meet
 * another row on it. */
typedef struct AaUnique
{
	char	   *name;
	bool		plain;			/* no expression, no predicate */
	int			ncols;
	int		   *cols;			/* remote column numbers; -1: not sent by the peer */
} AaUnique;

/* A relation of the peer, as its RELATION message describes it, with what
 * this node needs to apply its changes (found at its first change). */
typedef struct AaRel
{
	LogicalRepRelId remoteid;	/* hash key */
	LogicalRepRelation *rel;
	bool		resolved;
	Oid			relid;
	char	   *qualname;
	char	  **typnames;		/* local type of each remote column, without its
								 * modifier (see stmt_param) */
	bool	   *always_identity;	/* a GENERATED ALWAYS identity column here */
	/* the key in local column order: remote column numbers, and how each
	 * value's text becomes the canonical text tombstones hold */
	int			nkeys;
	int		   *keycols;
	Oid		   *key_input;
	Oid		   *key_ioparam;
	int32	   *key_typmod;
	Oid		   *key_output;
	int			nunique;
	AaUnique   *unique;
	AaDirectRel *direct;		/* NULL: every change through statements */
} AaRel;

/* One version of a row here: a live row, or a deleted key's tombstone. */
typedef struct LocalRow
{
	bool		found;			/* a live row */
	bool		has_ts;
	TimestampTz ts;
	char	   *node;			/* the node that wrote (or deleted) it */
	char	   *text;			/* the row as JSON */
	char	   *ctid;
	bool		has_seen;		/* a tombstone: what its deleter had seen */
	AaSeen		seen;
} LocalRow;

static HTAB *relations = NULL;
static MemoryContext RelCxt = NULL;

/* ---- relations */

void
aa_relations_init(MemoryContext cxt)
{
	HASHCTL		ctl;

	RelCxt = cxt;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(LogicalRepRelId);
	ctl.entrysize = sizeof(AaRel);
	ctl.hcxt = cxt;
	relations = hash_create("pgvigil_aa apply relations", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

void
aa_handle_relation(StringInfo s)
{
	MemoryContext old = MemoryContextSwitchTo(RelCxt);
	LogicalRepRelation *lr = logicalrep_read_rel(s);
	bool		found;
	AaRel	   *r = hash_search(relations, &lr->remoteid, HASH_ENTER, &found);

	/* described again: it changed; what this node needs is looked up again
	 * (and no executor state of the old description stays open) */
	aa_direct_close_all();
	r->rel = lr;
	r->resolved = false;
	MemoryContextSwitchTo(old);
}

static int
remote_column(LogicalRepRelation *lr, const char *name)
{
	for (int i = 0; i < lr->natts; i++)
		if (strcmp(lr->attnames[i], name) == 0)
			return i;
	return -1;
}

/* The table's unique indexes other than its key (SPI connected). */
static void
find_unique_indexes(AaRel *r)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(r->relid)};
	uint64		n;

	aa_spi_exec("SELECT i.indexrelid::regclass::text, (i.indpred IS NULL AND i.indexprs IS NULL)::text,"
				" a.attname::text"
				" FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid"
				" CROSS JOIN LATERAL generate_series(0, i.indnkeyatts - 1) AS k(ord)"
				" LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k.ord]"
				" WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid"
				" AND NOT (CASE WHEN t.relreplident = 'i' THEN i.indisreplident ELSE i.indisprimary END)"
				" ORDER BY i.indexrelid, k.ord",
				1, types, values, NULL, -1);
	n = SPI_processed;
	r->unique = palloc0(sizeof(AaUnique) * (n + 1));
	r->nunique = 0;
	for (uint64 row = 0; row < n; row++)
	{
		char	   *name = aa_spi_text(row, 1);
		char	   *att = aa_spi_text(row, 3);
		AaUnique   *u;

		if (r->nunique == 0 || strcmp(r->unique[r->nunique - 1].name, name) != 0)
		{
			u = &r->unique[r->nunique++];
			u->name = pstrdup(name);
			u->plain = strcmp(aa_spi_text(row, 2), "true") == 0;
			u->cols = palloc(sizeof(int) * n);
			u->ncols = 0;
		}
		u = &r->unique[r->nunique - 1];
		u->cols[u->ncols++] = att ? remote_column(r->rel, att) : -1;
	}
}

/* Is the column GENERATED ALWAYS AS IDENTITY? */
static bool
always_identity(Oid relid, AttrNumber attnum)
{
	HeapTuple	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(attnum));
	bool		always;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "pgvigil_aa: cache lookup failed for column %d of relation %u", attnum, relid);
	always = ((Form_pg_attribute) GETSTRUCT(tup))->attidentity == ATTRIBUTE_IDENTITY_ALWAYS;
	ReleaseSysCache(tup);
	return always;
}

static AaRel *
get_rel(LogicalRepRelId remoteid)
{
	bool		found;
	AaRel	   *r = hash_search(relations, &remoteid, HASH_FIND, &found);
	LogicalRepRelation *lr;
	MemoryContext old;
	AttrNumber *localatt;
	Oid		   *typids;
	Relation	rel;
	Bitmapset  *ident,
			   *sent = NULL;
	int			x = -1;

	if (!found)
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" sent a change of relation %u before describing it",
						aa_peer_name, remoteid)));
	if (r->resolved)
		return r;
	lr = r->rel;
	old = MemoryContextSwitchTo(RelCxt);
	r->relid = RangeVarGetRelid(makeRangeVar(lr->nspname, lr->relname, -1), NoLock, true);
	if (!OidIsValid(r->relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("pgvigil_aa: table \"%s.%s\" of peer \"%s\" does not exist here",
						lr->nspname, lr->relname, aa_peer_name)));
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
	r->always_identity = palloc0(sizeof(bool) * lr->natts);
	localatt = palloc(sizeof(AttrNumber) * lr->natts);
	typids = palloc(sizeof(Oid) * lr->natts);
	for (int i = 0; i < lr->natts; i++)
	{
		Oid			collid;
		int32		typmod;

		localatt[i] = get_attnum(r->relid, lr->attnames[i]);
		if (localatt[i] == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("pgvigil_aa: column \"%s\" of table \"%s.%s\" of peer \"%s\" does not exist here",
							lr->attnames[i], lr->nspname, lr->relname, aa_peer_name)));
		/*
		 * The type without its modifier, as the parser reads it back (bpchar,
		 * "bit": not character or bit, which mean length 1).  The column's
		 * own modifier then applies as to any assignment: a value too long
		 * for varchar(10) here is an error that stops the worker by name,
		 * never cut short by an explicit cast.
		 */
		get_atttypetypmodcoll(r->relid, localatt[i], &typids[i], &typmod, &collid);
		r->typnames[i] = format_type_with_typemod(typids[i], -1);
		r->always_identity[i] = always_identity(r->relid, localatt[i]);
	}

	/* the key: the same columns here as on the peer, or rows would be
	 * matched (and tombstones found) differently on the two sides */
	rel = table_open(r->relid, AccessShareLock);
	ident = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_IDENTITY_KEY);
	table_close(rel, AccessShareLock);
	for (int i = 0; i < lr->natts; i++)
		if (bms_is_member(i, lr->attkeys))
			sent = bms_add_member(sent, localatt[i] - FirstLowInvalidHeapAttributeNumber);
	if (!bms_equal(ident, sent))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pgvigil_aa: table %s has another key here than on peer \"%s\"", r->qualname, aa_peer_name),
				 errdetail("Rows are matched on the key: it must be the same columns on every node.")));
	r->nkeys = bms_num_members(ident);
	r->keycols = palloc(sizeof(int) * r->nkeys);
	r->key_input = palloc(sizeof(Oid) * r->nkeys);
	r->key_ioparam = palloc(sizeof(Oid) * r->nkeys);
	r->key_typmod = palloc(sizeof(int32) * r->nkeys);
	r->key_output = palloc(sizeof(Oid) * r->nkeys);
	for (int k = 0; (x = bms_next_member(ident, x)) >= 0; k++)
	{
		AttrNumber	attnum = x + FirstLowInvalidHeapAttributeNumber;
		bool		varlena;
		Oid			collid;
		Oid			typid;

		for (int i = 0; i < lr->natts; i++)
			if (localatt[i] == attnum)
				r->keycols[k] = i;
		get_atttypetypmodcoll(r->relid, attnum, &typid, &r->key_typmod[k], &collid);
		getTypeInputInfo(typid, &r->key_input[k], &r->key_ioparam[k]);
		getTypeOutputInfo(typid, &r->key_output[k], &varlena);
	}
	find_unique_indexes(r);
	/* (a unique index besides the key: a change may meet a row in its way
	 * there, which only the statements resolve) */
	r->direct = r->nunique == 0 ? aa_direct_prepare(r->relid, lr, localatt) : NULL;
	if (r->nunique > 0)
		ereport(LOG,
				(errmsg("pgvigil_aa: the changes of table \"%s.%s\" from peer \"%s\" go through statements: %s",
						lr->nspname, lr->relname, aa_peer_name, "a unique index besides the key")));
	r->resolved = true;
	MemoryContextSwitchTo(old);
	return r;
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
	appendStringInfoString(&st->sql, " WHERE ");
	for (int k = 0; k < r->nkeys; k++)
	{
		int			i = r->keycols[k];

		if (k)
			appendStringInfoString(&st->sql, " AND ");
		appendStringInfo(&st->sql, "aa_l.%s = ", quote_identifier(r->rel->attnames[i]));
		stmt_param(st, r, keytup, i);
	}
}

static void
stmt_exec(Stmt *st, int expect)
{
	aa_spi_exec(st->sql.data, st->n, st->types, st->values, st->nulls, expect);
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

/* the column the stream left out (unchanged, stored out of line), or -1 */
static int
unchanged_column(LogicalRepTupleData *tup)
{
	for (int i = 0; i < tup->ncols; i++)
		if (tup->colstatus[i] == LOGICALREP_COLUMN_UNCHANGED)
			return i;
	return -1;
}

/* ---- the local version of a row */

/* who wrote the version whose xmin is given, and when (what
 * pg_xact_commit_timestamp_origin says, without a query) */
static void
writer_of(TransactionId xid, LocalRow *out)
{
	TimestampTz ts = 0;
	RepOriginId origin = InvalidRepOriginId;
	char	   *roname = NULL;

	out->has_ts = TransactionIdIsNormal(xid) && TransactionIdGetCommitTsData(xid, &ts, &origin) && ts != 0;
	out->ts = out->has_ts ? ts : DT_NOBEGIN;
	if (out->has_ts && origin != InvalidRepOriginId && !replorigin_by_oid(origin, true, &roname))
		roname = NULL;
	out->node = aa_origin_node(roname);
}

static void
read_writer(const char *xmin, LocalRow *out)
{
	writer_of((TransactionId) strtoul(xmin, NULL, 10), out);
}

static void
read_local(AaRel *r, LogicalRepTupleData *keytup, LocalRow *out)
{
	Stmt		st;
	char	   *xmin;

	/*
	 * Lock the row first: a local transaction that changed it meanwhile is
	 * waited for, and the version returned is the newest (xmin and the row
	 * are re-read from it).  Its writer is asked afterwards: a function
	 * joined into the locking query would keep its answer for the older
	 * version.
	 */
	stmt_init(&st, r->rel->natts);
	appendStringInfo(&st.sql, "SELECT aa_l.xmin::text, row_to_json(aa_l.*)::text, aa_l.ctid::text FROM ONLY %s aa_l",
					 r->qualname);
	stmt_key_where(&st, r, keytup);
	appendStringInfoString(&st.sql, " FOR UPDATE OF aa_l");
	stmt_exec(&st, -1);
	memset(out, 0, sizeof(*out));
	if (SPI_processed == 0)
		return;
	out->found = true;
	xmin = pstrdup(aa_spi_text(0, 1));
	out->text = pstrdup(aa_spi_text(0, 2));
	out->ctid = pstrdup(aa_spi_text(0, 3));
	read_writer(xmin, out);
}

/* The key's canonical text, as the tombstone trigger writes it. */
static Datum
key_array(AaRel *r, LogicalRepTupleData *tup)
{
	Datum	   *texts = palloc(sizeof(Datum) * r->nkeys);
	bool	   *nulls = palloc(sizeof(bool) * r->nkeys);
	int			dims[1] = {r->nkeys};
	int			lbs[1] = {1};

	for (int k = 0; k < r->nkeys; k++)
	{
		int			i = r->keycols[k];

		nulls[k] = tup->colstatus[i] == LOGICALREP_COLUMN_NULL;
		texts[k] = (Datum) 0;
		if (!nulls[k])
		{
			Datum		d = OidInputFunctionCall(r->key_input[k], tup->colvalues[i].data, r->key_ioparam[k],
												 r->key_typmod[k]);

			texts[k] = CStringGetTextDatum(OidOutputFunctionCall(r->key_output[k], d));
		}
	}
	return PointerGetDatum(construct_md_array(texts, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
}

/* The tombstone of the key (or of the whole table, truncated): false if it
 * was not deleted here. */
static bool
read_tombstone(AaRel *r, LogicalRepTupleData *keytup, LocalRow *out)
{
	Oid			types[2] = {OIDOID, TEXTARRAYOID};
	Datum		values[2] = {ObjectIdGetDatum(r->relid), key_array(r, keytup)};
	char	   *seen;

	memset(out, 0, sizeof(*out));
	aa_spi_exec("SELECT t.xmin::text, t.seen FROM pgvigil_aa.tombstones t"
				" WHERE t.relid = $1 AND (t.key = $2 OR t.key = '{}')"
				" ORDER BY pg_xact_commit_timestamp(t.xmin) DESC NULLS LAST LIMIT 1",
				2, types, values, NULL, -1);
	if (SPI_processed == 0)
		return false;
	seen = aa_spi_text(0, 2);
	if (seen)
		out->has_seen = aa_seen_parse(seen, strlen(seen), &out->seen);
	read_writer(pstrdup(aa_spi_text(0, 1)), out);
	return true;
}

/*
 * A remote delete that found no row here leaves its tombstone all the same:
 * an insert of the row from a third node may still be on its way.  The
 * tombstone becomes this delete's (its time and origin), knowing what either
 * deleter had seen (old: the tombstone there was): a delete of a row this
 * node has not received yet must keep that row from coming back.
 */
static void
write_tombstone(AaRel *r, LogicalRepTupleData *keytup, const LocalRow *old)
{
	Oid			types[3] = {OIDOID, TEXTARRAYOID, TEXTOID};
	Datum		values[3] = {ObjectIdGetDatum(r->relid), key_array(r, keytup), (Datum) 0};
	AaSeen	   *merged = palloc(sizeof(AaSeen));
	StringInfoData seen;

	merged->n = 0;
	if (aa_applying_seen)
		*merged = *aa_applying_seen;
	if (old && old->has_seen)
		(void) aa_seen_merge(merged, &old->seen);
	initStringInfo(&seen);
	aa_seen_format(merged, &seen);
	values[2] = CStringGetTextDatum(seen.data);
	aa_spi_exec("INSERT INTO pgvigil_aa.tombstones (relid, key, seen) VALUES ($1, $2, $3)"
				" ON CONFLICT (relid, key) DO UPDATE SET seen = EXCLUDED.seen",
				3, types, values, NULL, 1);
}

/* ---- conflicts */

/*
 * Had the peer seen this version (written, or deleted, by v->node at v->ts)
 * when it made the change being applied?  Its own versions, yes: they come
 * in order; and versions older than any commit time kept, too.  Others, when its causality message says so; without one
 * (a peer that does not log them), never: the change is then a conflict,
 * which the ordering policies resolve the same way on every node.
 */
static bool
peer_saw(LocalRow *v)
{
	if (strcmp(v->node, aa_peer_name) == 0)
		return true;
	/* no commit time: written before track_commit_timestamp kept one (or
	 * frozen past it), before the group's writes: every node had it */
	if (!v->has_ts)
		return true;
	return aa_seen_has(aa_applying_seen, v->node, v->ts);
}

/* ---- the changes without a conflict, through the access methods */

typedef enum
{
	DIRECT_NO,					/* the table takes the statements */
	DIRECT_MISSING,				/* no row of the key here */
	DIRECT_SEEN,				/* a version the peer had seen, locked */
	DIRECT_UNSEEN				/* another: the statements decide */
} DirectLookup;

/* The key's row through the direct path, and whether the peer had seen its
 * version (only then is it kept locked for the direct path). */
static DirectLookup
direct_lookup(AaRel *r, LogicalRepTupleData *keytup)
{
	TransactionId xmin;
	bool		usable;
	LocalRow	v;

	if (!aa_direct_find(r->direct, keytup, &xmin, &usable))
		return usable ? DIRECT_MISSING : DIRECT_NO;
	memset(&v, 0, sizeof(v));
	v.found = true;
	writer_of(xmin, &v);
	if (peer_saw(&v))
		return DIRECT_SEEN;
	aa_direct_release(r->direct);
	return DIRECT_UNSEEN;
}

/* Is the key deleted here by a delete the peer had not seen (the newest
 * of its tombstone and the table's, as read_tombstone orders them)? */
static bool
direct_tombstone_unseen(AaRel *r, LogicalRepTupleData *keytup)
{
	TransactionId xmins[2];
	int			n = aa_direct_tombstones(r->direct, key_array(r, keytup), xmins);
	LocalRow	newest;

	for (int i = 0; i < n; i++)
	{
		LocalRow	v;

		memset(&v, 0, sizeof(v));
		writer_of(xmins[i], &v);
		if (i == 0 || (v.has_ts && (!newest.has_ts || v.ts > newest.ts)))
			newest = v;
	}
	return n > 0 && !peer_saw(&newest);
}

/* A remote insert without a conflict: the row is new here (and its key not
 * deleted by a delete the peer had not seen), or its version is one the
 * peer had seen.  False: nothing done, the statements take it. */
static bool
direct_insert(AaRel *r, LogicalRepTupleData *tup)
{
	switch (direct_lookup(r, tup))
	{
		case DIRECT_SEEN:
			aa_direct_update_found(r->direct, tup);
			return true;
		case DIRECT_MISSING:
			return unchanged_column(tup) < 0 && !direct_tombstone_unseen(r, tup) && aa_direct_insert(r->direct, tup);
		default:
			return false;
	}
}

static void
record_conflict(const char *kind, AaRel *r, LogicalRepTupleData *keytup, LogicalRepTupleData *remote,
				LocalRow *local, const char *policy, bool remote_won)
{
	Oid			types[11];
	Datum		values[11];
	char		nulls[11];
	const char *texts[11];

	texts[0] = aa_peer_name;
	texts[1] = kind;
	texts[2] = r->qualname;
	texts[3] = tuple_text(r, keytup, true);
	texts[4] = local->found ? local->text : NULL;
	texts[5] = remote ? tuple_text(r, remote, false) : NULL;
	texts[6] = local->node;
	texts[7] = NULL;
	texts[8] = NULL;
	texts[9] = policy;
	texts[10] = remote_won ? "remote" : "local";
	for (int i = 0; i < 11; i++)
	{
		types[i] = TEXTOID;
		values[i] = texts[i] ? CStringGetTextDatum(texts[i]) : (Datum) 0;
		nulls[i] = texts[i] ? ' ' : 'n';
	}
	types[7] = TIMESTAMPTZOID;
	values[7] = TimestampTzGetDatum(local->ts);
	nulls[7] = local->node && local->has_ts ? ' ' : 'n';
	types[8] = TIMESTAMPTZOID;
	values[8] = TimestampTzGetDatum(aa_remote_commit_ts);
	nulls[8] = ' ';
	aa_spi_exec("INSERT INTO pgvigil_aa.conflicts (peer, kind, relation, key, local_row, remote_row, local_origin,"
				" local_commit_ts, remote_commit_ts, policy, winner)"
				" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
				11, types, values, nulls, 1);
	if (aa_my_state)
		aa_my_state->conflicts++;
}

/* The table's policy, its resolver, and the priorities of the two writers. */
static AaPolicy
table_policy(AaRel *r, const char *local_node, Oid *resolver, int *local_prio, int *remote_prio)
{
	Oid			types[3] = {OIDOID, TEXTOID, TEXTOID};
	Datum		values[3] = {ObjectIdGetDatum(r->relid), CStringGetTextDatum(local_node),
	CStringGetTextDatum(aa_peer_name)};
	char	   *name;
	bool		isnull;
	AaPolicy	policy = AA_POLICY_LAST_WRITER_WINS;

	aa_spi_exec("SELECT (SELECT policy FROM pgvigil_aa.table_policies WHERE relation = $1::regclass),"
				" (SELECT resolver::oid FROM pgvigil_aa.table_policies WHERE relation = $1::regclass),"
				" COALESCE((SELECT priority FROM pgvigil_aa.local_node WHERE name = $2),"
				" (SELECT priority FROM pgvigil_aa.peers WHERE name = $2), 0),"
				" COALESCE((SELECT priority FROM pgvigil_aa.peers WHERE name = $3), 0)",
				3, types, values, NULL, 1);
	name = aa_spi_text(0, 1);
	if (name && !aa_policy_from_name(name, &policy))
		ereport(ERROR,
				(errmsg("pgvigil_aa: table %s has an unknown policy \"%s\"", r->qualname, name)));
	*resolver = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (isnull)
		*resolver = InvalidOid;
	*local_prio = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	*remote_prio = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	return policy;
}

/* The operator's decision for the transaction being applied: unread (-1),
 * none (0), keep the local versions (1), apply the remote changes (2). */
static int	txn_decision = -1;

void
aa_change_begin_transaction(void)
{
	txn_decision = -1;
}

/* The decision applies to every conflict of a table with policy error in
 * the transaction the apply stopped at; it is used up when that
 * transaction commits (in the same commit). */
void
aa_change_end_transaction(void)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(aa_peer_name)};

	if (txn_decision > 0)
		aa_spi_exec("UPDATE pgvigil_aa.peers SET decision = NULL WHERE name = $1", 1, types, values, NULL, 1);
	txn_decision = -1;
}

/* A DDL statement of the peer failed here: skipped when the operator
 * decided 'local' (recorded, kind ddl_failed); otherwise the apply stops. */
bool
aa_change_skip_failed_ddl(const char *stmt, const char *error)
{
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[4];

	if (txn_decision < 0)
	{
		Oid			t[1] = {TEXTOID};
		Datum		v[1] = {CStringGetTextDatum(aa_peer_name)};
		char	   *d;

		aa_spi_exec("SELECT decision FROM pgvigil_aa.peers WHERE name = $1", 1, t, v, NULL, 1);
		d = aa_spi_text(0, 1);
		txn_decision = d == NULL ? 0 : strcmp(d, "remote") == 0 ? 2 : 1;
	}
	if (txn_decision != 1)
		return false;
	values[0] = CStringGetTextDatum(aa_peer_name);
	values[1] = CStringGetTextDatum(stmt);
	values[2] = CStringGetTextDatum(error);
	values[3] = TimestampTzGetDatum(aa_remote_commit_ts);
	aa_spi_exec("INSERT INTO pgvigil_aa.conflicts (peer, kind, relation, key, local_row, remote_row,"
				" remote_commit_ts, policy, winner)"
				" VALUES ($1, 'ddl_failed', '(ddl)', '-', $3, $2, $4, 'error', 'local')",
				4, types, values, NULL, 1);
	return true;
}

/* The operator's decision on a conflict of a table whose policy is error;
 * without one the apply stops here. */
static bool
operator_decision(const char *kind, AaRel *r, LogicalRepTupleData *keytup)
{
	if (txn_decision < 0)
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(aa_peer_name)};
		char	   *d;

		aa_spi_exec("SELECT decision FROM pgvigil_aa.peers WHERE name = $1", 1, types, values, NULL, 1);
		d = aa_spi_text(0, 1);
		txn_decision = d == NULL ? 0 : strcmp(d, "remote") == 0 ? 2 : 1;
	}
	if (txn_decision > 0)
		return txn_decision == 2;
	ereport(ERROR,
			(errcode(ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION),
			 errmsg("pgvigil_aa: conflict %s on %s (%s) from peer \"%s\": the table's policy is error, the apply from this peer stops",
					kind, r->qualname, tuple_text(r, keytup, true), aa_peer_name),
			 errhint("Decide with SELECT pgvigil_aa.resolve_stopped('%s', 'local') to keep this node's versions,"
					 " or 'remote' to apply the peer's changes, for every such conflict of the transaction;"
					 " the apply resumes within 5 s.", aa_peer_name)));
	return false;				/* not reached */
}

/* the remote row as JSON (the columns the stream carries) */
static char *
remote_json(AaRel *r, LogicalRepTupleData *tup)
{
	Stmt		st;
	bool		first = true;

	stmt_init(&st, r->rel->natts);
	appendStringInfoString(&st.sql, "SELECT row_to_json(aa_r)::text FROM (SELECT ");
	for (int i = 0; i < r->rel->natts; i++)
	{
		if (tup->colstatus[i] == LOGICALREP_COLUMN_UNCHANGED)
			continue;
		if (!first)
			appendStringInfoString(&st.sql, ", ");
		first = false;
		stmt_param(&st, r, tup, i);
		appendStringInfo(&st.sql, " AS %s", quote_identifier(r->rel->attnames[i]));
	}
	appendStringInfoString(&st.sql, ") aa_r");
	stmt_exec(&st, 1);
	return pstrdup(aa_spi_text(0, 1));
}

/*
 * A custom resolver: a function answers 'local' or 'remote'.  It is called
 * by its OID (the one pgvigil_aa.table_policies names), with the arguments
 * the policy documents; a function with another signature stops the worker,
 * by name.
 */
static bool
custom_decision(Oid resolver, const char *kind, AaRel *r, LogicalRepTupleData *remote, LocalRow *local)
{
	static const Oid want[8] = {TEXTOID, REGCLASSOID, JSONBOID, JSONBOID, TEXTOID, TEXTOID,
	TIMESTAMPTZOID, TIMESTAMPTZOID};
	Oid		   *argtypes;
	int			nargs;
	Oid			rettype = get_func_signature(resolver, &argtypes, &nargs);
	char	   *rjson = remote ? remote_json(r, remote) : NULL;
	FmgrInfo	flinfo;
	Datum		result;
	char	   *answer;

	LOCAL_FCINFO(fcinfo, 8);

	if (rettype != TEXTOID || nargs != 8 || memcmp(argtypes, want, sizeof(want)) != 0)
		ereport(ERROR,
				(errmsg("pgvigil_aa: resolver %s of table %s does not take (text, regclass, jsonb, jsonb, text, text,"
						" timestamptz, timestamptz) and return text", format_procedure(resolver), r->qualname)));
	fmgr_info(resolver, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 8, DEFAULT_COLLATION_OID, NULL, NULL);
	fcinfo->args[0].value = CStringGetTextDatum(kind);
	fcinfo->args[1].value = ObjectIdGetDatum(r->relid);
	fcinfo->args[2].value = local->found ? DirectFunctionCall1(jsonb_in, CStringGetDatum(local->text)) : (Datum) 0;
	fcinfo->args[3].value = rjson ? DirectFunctionCall1(jsonb_in, CStringGetDatum(rjson)) : (Datum) 0;
	fcinfo->args[4].value = CStringGetTextDatum(local->node ? local->node : aa_local_name);
	fcinfo->args[5].value = CStringGetTextDatum(aa_peer_name);
	fcinfo->args[6].value = TimestampTzGetDatum(local->ts);
	fcinfo->args[7].value = TimestampTzGetDatum(aa_remote_commit_ts);
	for (int i = 0; i < 8; i++)
		fcinfo->args[i].isnull = false;
	fcinfo->args[2].isnull = !local->found;
	fcinfo->args[3].isnull = rjson == NULL;
	fcinfo->args[6].isnull = !local->has_ts;
	result = FunctionCallInvoke(fcinfo);
	answer = fcinfo->isnull ? NULL : TextDatumGetCString(result);
	if (answer && strcmp(answer, "remote") == 0)
		return true;
	if (answer && strcmp(answer, "local") == 0)
		return false;
	ereport(ERROR,
			(errmsg("pgvigil_aa: resolver %s of table %s answered %s for a conflict %s: 'local' or 'remote' expected",
					format_procedure(resolver), r->qualname, answer ? quote_literal_cstr(answer) : "NULL", kind)));
	return false;				/* not reached */
}

/*
 * Does the remote change win a conflict of this kind?  ordered is the
 * answer of the ordering policies when they do not compare the two versions
 * (1: the remote change, 0: the local version; -1: compare them).  *policy
 * is the policy that decided, for the record.
 */
static bool
decide(const char *kind, AaRel *r, LogicalRepTupleData *keytup, LogicalRepTupleData *remote, LocalRow *local,
	   int ordered, const char **policy_name)
{
	Oid			resolver;
	int			local_prio,
				remote_prio;
	AaPolicy	policy = table_policy(r, local->node ? local->node : aa_local_name, &resolver, &local_prio,
									  &remote_prio);

	*policy_name = aa_policy_name(policy);
	switch (policy)
	{
		case AA_POLICY_LAST_WRITER_WINS:
		case AA_POLICY_FIRST_WRITER_WINS:
		case AA_POLICY_NODE_PRIORITY:
			if (ordered >= 0)
				return ordered == 1;
			{
				AaVersion	lv = {local->has_ts ? local->ts : DT_NOBEGIN, local->node, local_prio};
				AaVersion	rv = {aa_remote_commit_ts, aa_peer_name, remote_prio};

				return aa_remote_wins(policy, &lv, &rv);
			}
		case AA_POLICY_KEEP_LOCAL:
		case AA_POLICY_SKIP:
			return false;
		case AA_POLICY_APPLY_REMOTE:
			return true;
		case AA_POLICY_ERROR:
			return operator_decision(kind, r, keytup);
		case AA_POLICY_CUSTOM:
			return custom_decision(resolver, kind, r, remote, local);
	}
	return false;
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
		/* (a GENERATED ALWAYS identity value is never set by an UPDATE: the
		 * row keeps the one it was inserted with, everywhere) */
		if (newtup->colstatus[i] == LOGICALREP_COLUMN_UNCHANGED || r->always_identity[i])
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
	stmt_exec(&st, -1);
}

/* Insert the row; with on_conflict_nothing, a row in the way (on any unique
 * index) leaves it out.  Returns the number of rows inserted. */
static uint64
insert_row(AaRel *r, LogicalRepTupleData *tup, bool on_conflict_nothing)
{
	Stmt		st;
	int			missing = unchanged_column(tup);

	if (missing >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pgvigil_aa: a row of %s (%s) from peer \"%s\" must be inserted here, but the stream leaves"
						" column \"%s\" out (unchanged, stored out of line)",
						r->qualname, tuple_text(r, tup, true), aa_peer_name, r->rel->attnames[missing]),
				 errdetail("The apply from this peer stops here and retries: the row's insert may still be on its way from another node.")));
	stmt_init(&st, r->rel->natts);
	appendStringInfo(&st.sql, "INSERT INTO %s AS aa_l (", r->qualname);
	for (int i = 0; i < r->rel->natts; i++)
		appendStringInfo(&st.sql, "%s%s", i ? ", " : "", quote_identifier(r->rel->attnames[i]));
	/* (the peer's values, also of a GENERATED ALWAYS identity column) */
	appendStringInfoString(&st.sql, ") OVERRIDING SYSTEM VALUE VALUES (");
	for (int i = 0; i < r->rel->natts; i++)
	{
		if (i)
			appendStringInfoString(&st.sql, ", ");
		stmt_param(&st, r, tup, i);
	}
	appendStringInfoString(&st.sql, on_conflict_nothing ? ") ON CONFLICT DO NOTHING" : ")");
	stmt_exec(&st, -1);
	return SPI_processed;
}

static void
delete_ctid(AaRel *r, const char *ctid)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(ctid)};

	aa_spi_exec(psprintf("DELETE FROM ONLY %s WHERE ctid = $1::tid", r->qualname), 1, types, values, NULL, 1);
}

/* the snapshot again: what committed here since the change began (a local
 * insert of the same row that the worker's insert waited for) */
static void
refresh_snapshot(void)
{
	PopActiveSnapshot();
	PushActiveSnapshot(GetTransactionSnapshot());
}

/*
 * Other rows in the way of a remote row on the unique indexes that are not
 * the key (besides the row being updated, exclude_ctid): the remote row wins
 * only over every one of them (each conflict recorded, kind), and then they
 * are deleted.  Returns whether the remote change may go on; true when
 * nothing is in the way.  An index whose columns the change leaves out
 * (unchanged) is not in the way.
 */
static bool
resolve_unique(AaRel *r, LogicalRepTupleData *tup, const char *exclude_ctid, const char *kind,
			   bool *ordered_loss)
{
	Stmt		st;
	int			nconds = 0;
	int			nrows;
	LocalRow   *rows;
	char	  **xmins;
	const char *policy = NULL;
	bool		wins = true;

	*ordered_loss = false;
	if (r->nunique == 0)
		return true;
	stmt_init(&st, r->rel->natts * (r->nunique + 1) + 1);
	appendStringInfo(&st.sql, "SELECT aa_l.xmin::text, row_to_json(aa_l.*)::text, aa_l.ctid::text FROM ONLY %s aa_l WHERE (",
					 r->qualname);
	for (int u = 0; u < r->nunique; u++)
	{
		AaUnique   *idx = &r->unique[u];
		bool		skip = false;

		for (int c = 0; c < idx->ncols; c++)
			if (idx->cols[c] >= 0 && tup->colstatus[idx->cols[c]] != LOGICALREP_COLUMN_TEXT)
				skip = true;	/* NULLs are distinct; unchanged: as before */
		if (skip)
			continue;
		for (int c = 0; c < idx->ncols; c++)
			if (!idx->plain || idx->cols[c] < 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("pgvigil_aa: a row of peer \"%s\" in %s (%s) may conflict on unique index %s,"
								" which has an expression, a predicate or a column the peer does not send",
								aa_peer_name, r->qualname, tuple_text(r, tup, true), idx->name),
						 errdetail("Such conflicts are not resolved: the apply from this peer stops here.")));
		appendStringInfoString(&st.sql, nconds++ ? " OR (" : "(");
		for (int c = 0; c < idx->ncols; c++)
		{
			appendStringInfo(&st.sql, "%saa_l.%s = ", c ? " AND " : "", quote_identifier(r->rel->attnames[idx->cols[c]]));
			stmt_param(&st, r, tup, idx->cols[c]);
		}
		appendStringInfoChar(&st.sql, ')');
	}
	if (nconds == 0)
		return true;
	appendStringInfoChar(&st.sql, ')');
	if (exclude_ctid)
	{
		st.types[st.n] = TEXTOID;
		st.values[st.n] = CStringGetTextDatum(exclude_ctid);
		st.nulls[st.n] = ' ';
		st.n++;
		appendStringInfo(&st.sql, " AND aa_l.ctid <> $%d::tid", st.n);
	}
	appendStringInfoString(&st.sql, " FOR UPDATE OF aa_l");
	stmt_exec(&st, -1);
	nrows = (int) SPI_processed;
	if (nrows == 0)
		return true;
	rows = palloc0(sizeof(LocalRow) * nrows);
	xmins = palloc(sizeof(char *) * nrows);
	for (int i = 0; i < nrows; i++)
	{
		rows[i].found = true;
		xmins[i] = pstrdup(aa_spi_text(i, 1));
		rows[i].text = pstrdup(aa_spi_text(i, 2));
		rows[i].ctid = pstrdup(aa_spi_text(i, 3));
	}
	for (int i = 0; i < nrows; i++)
	{
		read_writer(xmins[i], &rows[i]);
		wins = decide(kind, r, tup, tup, &rows[i], -1, &policy) && wins;
	}
	if (wins)
		for (int i = 0; i < nrows; i++)
			delete_ctid(r, rows[i].ctid);
	for (int i = 0; i < nrows; i++)
		record_conflict(kind, r, tup, tup, &rows[i], policy, wins);
	{
		AaPolicy	p;

		*ordered_loss = !wins && aa_policy_from_name(policy, &p) && aa_policy_orders(p);
	}
	return wins;
}

/* A remote insert that ON CONFLICT DO NOTHING left out, while its key is
 * not here: another unique index is in the way. */
static void
insert_unique_conflict(AaRel *r, LogicalRepTupleData *tup)
{
	bool		ordered_loss;

	/* (nothing found in the way: a constraint of another kind) */
	if (resolve_unique(r, tup, NULL, "insert_unique", &ordered_loss))
	{
		if (insert_row(r, tup, true) != 1)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("pgvigil_aa: a row inserted by peer \"%s\" into %s (%s) is refused here by a constraint that is not a unique index",
							aa_peer_name, r->qualname, tuple_text(r, tup, true)),
					 errdetail("The apply from this peer stops here.")));
	}
}

static void update_row(AaRel *r, LogicalRepTupleData *keytup, LogicalRepTupleData *newtup, const char *ctid);

/* A remote update becomes the row (its row is missing here), after the rows
 * in its way on other unique indexes lost. */
static void
insert_missing_row(AaRel *r, LogicalRepTupleData *tup)
{
	bool		ordered_loss;
	LocalRow	local;
	const char *policy;
	bool		wins;

	if (!resolve_unique(r, tup, NULL, "update_unique", &ordered_loss) || insert_row(r, tup, true) == 1)
		return;
	/* a local insert of the key committed meanwhile: the two versions are
	 * resolved like any other pair */
	refresh_snapshot();
	read_local(r, tup, &local);
	if (!local.found)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("pgvigil_aa: a row of peer \"%s\" for %s (%s) is refused here by a constraint that is not a unique index",
						aa_peer_name, r->qualname, tuple_text(r, tup, true)),
				 errdetail("The apply from this peer stops here.")));
	wins = decide("insert_exists", r, tup, tup, &local, -1, &policy);
	if (wins)
		update_row(r, tup, tup, local.ctid);
	record_conflict("insert_exists", r, tup, tup, &local, policy, wins);
}

/*
 * Update the row, after the rows in its way on other unique indexes lost.
 * A remote update that loses to one of them takes its row along: the node
 * it came from has that row with the losing value, which cannot stay next
 * to the winner, and deletes it when the winner arrives there; so under the
 * ordering policies the row goes here too (recorded as the conflict's
 * remote version).
 */
static void
update_row(AaRel *r, LogicalRepTupleData *keytup, LogicalRepTupleData *newtup, const char *ctid)
{
	bool		ordered_loss;

	if (resolve_unique(r, newtup, ctid, "update_unique", &ordered_loss))
		do_update(r, keytup, newtup);
	else if (ordered_loss)
		delete_ctid(r, ctid);
}

static void
change_error_context(void *arg)
{
	AaRel	   *r = arg;

	errcontext("applying a change of peer \"%s\" to table \"%s.%s\"", aa_peer_name, r->rel->nspname, r->rel->relname);
}

#define WITH_ERROR_CONTEXT(r) \
	ErrorContextCallback errcb = {.previous = error_context_stack, .callback = change_error_context, .arg = (r)}; \
	error_context_stack = &errcb
#define END_ERROR_CONTEXT() (error_context_stack = errcb.previous)

void
aa_apply_insert(StringInfo s)
{
	LogicalRepTupleData newtup;
	AaRel	   *r = get_rel(logicalrep_read_insert(s, &newtup));
	LocalRow	local;
	const char *policy;
	bool		wins;

	WITH_ERROR_CONTEXT(r);
	if (r->direct && direct_insert(r, &newtup))
	{
		END_ERROR_CONTEXT();
		return;
	}
	read_local(r, &newtup, &local);
	if (!local.found)
	{
		LocalRow	tomb;

		/*
		 * Deleted here (or truncated) by a delete the inserting peer had not
		 * seen: the delete and the insert are concurrent, and the delete wins,
		 * as it does on the peer, where it meets the inserted row (a delete
		 * beats a concurrent change of the key).  It may also be a delete of
		 * this very row that overtook it from a third node.  A delete the
		 * peer had seen leaves the insert a new row.
		 */
		if (read_tombstone(r, &newtup, &tomb) && !peer_saw(&tomb))
		{
			wins = decide("insert_deleted", r, &newtup, &newtup, &tomb, 0, &policy);
			if (!wins || insert_row(r, &newtup, true) == 1)
			{
				record_conflict("insert_deleted", r, &newtup, &newtup, &tomb, policy, wins);
				END_ERROR_CONTEXT();
				return;
			}
		}
		else if (insert_row(r, &newtup, true) == 1)
		{
			END_ERROR_CONTEXT();
			return;
		}
		/* a local insert of the same key may have committed meanwhile: it is
		 * read again and resolved like any other; or another unique index */
		refresh_snapshot();
		read_local(r, &newtup, &local);
		if (!local.found)
		{
			insert_unique_conflict(r, &newtup);
			END_ERROR_CONTEXT();
			return;
		}
	}
	if (peer_saw(&local))
		update_row(r, &newtup, &newtup, local.ctid);
	else
	{
		/* the key exists here already: the winner becomes the row */
		wins = decide("insert_exists", r, &newtup, &newtup, &local, -1, &policy);
		if (wins)
			update_row(r, &newtup, &newtup, local.ctid);
		record_conflict("insert_exists", r, &newtup, &newtup, &local, policy, wins);
	}
	END_ERROR_CONTEXT();
}

void
aa_apply_update(StringInfo s)
{
	bool		has_old;
	LogicalRepTupleData oldtup,
				newtup;
	AaRel	   *r = get_rel(logicalrep_read_update(s, &has_old, &oldtup, &newtup));
	LogicalRepTupleData *keytup = has_old ? &oldtup : &newtup;
	LocalRow	local,
				tomb;
	bool		deleted;
	const char *policy;
	bool		wins;

	WITH_ERROR_CONTEXT(r);
	if (r->direct && direct_lookup(r, keytup) == DIRECT_SEEN)
	{
		aa_direct_update_found(r->direct, &newtup);
		END_ERROR_CONTEXT();
		return;
	}
	read_local(r, keytup, &local);
	if (local.found && peer_saw(&local))
	{
		/* the peer changed this very version: no conflict */
		update_row(r, keytup, &newtup, local.ctid);
		END_ERROR_CONTEXT();
		return;
	}
	/*
	 * Deleted here, by a delete the peer had not seen: the update was of the
	 * deleted row, and the delete beats it under the ordering policies (the
	 * deleting node drops the update the same way), whether the key is
	 * missing or was inserted again since.
	 */
	deleted = read_tombstone(r, keytup, &tomb) && !peer_saw(&tomb);
	if (deleted)
	{
		wins = decide("update_deleted", r, keytup, &newtup, &tomb, 0, &policy);
		if (wins && local.found)
			update_row(r, keytup, &newtup, local.ctid);
		else if (wins)
			insert_missing_row(r, &newtup);
		record_conflict("update_deleted", r, keytup, &newtup, &tomb, policy, wins);
	}
	else if (!local.found)
	{
		/* never here, or inserted again after a delete the peer had seen: its
		 * insert is on its way from another node, and the update becomes
		 * the row */
		wins = decide("update_missing", r, keytup, &newtup, &local, 1, &policy);
		if (wins)
			insert_missing_row(r, &newtup);
		record_conflict("update_missing", r, keytup, &newtup, &local, policy, wins);
	}
	else
	{
		wins = decide("update_update", r, keytup, &newtup, &local, -1, &policy);
		if (wins)
		{
			int			missing = unchanged_column(&newtup);

			/* an unchanged (TOASTed) value of the peer's is not sent: over
			 * another node's version it would leave that node's value */
			if (missing >= 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("pgvigil_aa: an update from peer \"%s\" of %s (%s) conflicts with another node's version"
								" and leaves column \"%s\" out (unchanged, stored out of line)",
								aa_peer_name, r->qualname, tuple_text(r, keytup, true), r->rel->attnames[missing]),
						 errdetail("Such conflicts are not resolved yet: the apply from this peer stops here.")));
			update_row(r, keytup, &newtup, local.ctid);
		}
		record_conflict("update_update", r, keytup, &newtup, &local, policy, wins);
	}
	END_ERROR_CONTEXT();
}

void
aa_apply_delete(StringInfo s)
{
	LogicalRepTupleData oldtup;
	AaRel	   *r = get_rel(logicalrep_read_delete(s, &oldtup));
	LocalRow	local,
				tomb;
	bool		deleted;
	const char *policy;
	bool		wins;

	WITH_ERROR_CONTEXT(r);
	if (r->direct && direct_lookup(r, &oldtup) == DIRECT_SEEN)
	{
		aa_direct_delete_found(r->direct);
		END_ERROR_CONTEXT();
		return;
	}
	read_local(r, &oldtup, &local);
	if (local.found && peer_saw(&local))
	{
		/* the peer deleted this very version: no conflict */
		delete_ctid(r, local.ctid);
		END_ERROR_CONTEXT();
		return;
	}
	deleted = read_tombstone(r, &oldtup, &tomb) && !peer_saw(&tomb);
	if (!local.found)
	{
		bool		had_tombstone = tomb.node != NULL;

		/* nothing to decide: the row is gone either way; the delete leaves
		 * its tombstone (the row may be on its way from a third node) */
		write_tombstone(r, &oldtup, had_tombstone ? &tomb : NULL);
		record_conflict(deleted ? "delete_deleted" : "delete_missing", r, &oldtup, NULL, deleted ? &tomb : &local,
						"none", true);
	}
	else if (deleted)
	{
		/* inserted again after a delete the peer had not seen: the peer
		 * deleted the older row, this one stays under the ordering policies */
		wins = decide("delete_deleted", r, &oldtup, NULL, &local, 0, &policy);
		if (wins)
			delete_ctid(r, local.ctid);
		record_conflict("delete_deleted", r, &oldtup, NULL, &local, policy, wins);
	}
	else
	{
		/* a delete beats a concurrent update under the ordering policies */
		wins = decide("delete_update", r, &oldtup, NULL, &local, 1, &policy);
		if (wins)
			delete_ctid(r, local.ctid);
		record_conflict("delete_update", r, &oldtup, NULL, &local, policy, wins);
	}
	END_ERROR_CONTEXT();
}

void
aa_apply_truncate(StringInfo s)
{
	bool		cascade,
				restart_seqs;
	List	   *relids = logicalrep_read_truncate(s, &cascade, &restart_seqs);
	ListCell   *lc;
	StringInfoData sql;

	aa_direct_close_all();		/* (TRUNCATE wants its tables unused) */
	initStringInfo(&sql);
	appendStringInfoString(&sql, "TRUNCATE ONLY ");
	foreach(lc, relids)
	{
		AaRel	   *r = get_rel(lfirst_oid(lc));

		appendStringInfo(&sql, "%s%s", lc == list_head(relids) ? "" : ", ", r->qualname);
	}
	appendStringInfo(&sql, "%s%s", restart_seqs ? " RESTART IDENTITY" : "", cascade ? " CASCADE" : "");
	aa_spi_exec(sql.data, 0, NULL, NULL, NULL, -1);
}
