/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_tombstone.c
 *	  The trigger that records deleted keys in pgvigil_aa.tombstones.
 *
 * Every replicated table has it (pgvigil_aa.track_deletes, run for existing
 * tables when the extension is created and for new ones by an event
 * trigger), enabled ALWAYS so that it also records the deletes the apply
 * worker makes.  A row of pgvigil_aa.tombstones is written by the deleting
 * transaction: its xmin's commit time and origin say when and on which node
 * the key was deleted.  A TRUNCATE records the empty key: every row of the
 * table deleted at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/sysattr.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/bitmapset.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"

#include "pgvigil_aa_seen.h"
#include "pgvigil_aa_shared.h"
#include "pgvigil_aa_tombstone.h"

PG_FUNCTION_INFO_V1(pgvigil_aa_record_delete);

/* the settings every output function that depends on one reads */
static const char *const canonical_settings[][2] = {
	{"DateStyle", "ISO, YMD"},
	{"IntervalStyle", "postgres"},
	{"TimeZone", "UTC"},
	{"extra_float_digits", "1"},
	{"bytea_output", "hex"},
};

int
aa_canonical_output_push(void)
{
	int			nest_level = NewGUCNestLevel();

	for (int i = 0; i < lengthof(canonical_settings); i++)
		(void) set_config_option(canonical_settings[i][0], canonical_settings[i][1], PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	return nest_level;
}

void
aa_canonical_output_pop(int nest_level)
{
	AtEOXact_GUC(true, nest_level);
}

void
aa_canonical_output_always(void)
{
	for (int i = 0; i < lengthof(canonical_settings); i++)
		SetConfigOption(canonical_settings[i][0], canonical_settings[i][1], PGC_SUSET, PGC_S_OVERRIDE);
}

/* The key of a deleted row: its replica identity columns in column order. */
static ArrayType *
deleted_key(Relation rel, HeapTuple tuple)
{
	Bitmapset  *keys = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_IDENTITY_KEY);
	TupleDesc	desc = RelationGetDescr(rel);
	int			n = bms_num_members(keys),
				i = 0,
				x = -1,
				nest_level;
	Datum	   *texts;
	bool	   *nulls;
	int			dims[1];
	int			lbs[1] = {1};

	if (n == 0)
		return NULL;
	texts = palloc(sizeof(Datum) * n);
	nulls = palloc(sizeof(bool) * n);
	nest_level = aa_canonical_output_push();
	while ((x = bms_next_member(keys, x)) >= 0)
	{
		AttrNumber	attnum = x + FirstLowInvalidHeapAttributeNumber;
		bool		isnull;
		Datum		d = heap_getattr(tuple, attnum, desc, &isnull);

		nulls[i] = isnull;
		texts[i] = (Datum) 0;
		if (!isnull)
		{
			Oid			typoutput;
			bool		varlena;

			getTypeOutputInfo(TupleDescAttr(desc, attnum - 1)->atttypid, &typoutput, &varlena);
			texts[i] = CStringGetTextDatum(OidOutputFunctionCall(typoutput, d));
		}
		i++;
	}
	aa_canonical_output_pop(nest_level);
	dims[0] = n;
	return construct_md_array(texts, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT);
}

Datum
pgvigil_aa_record_delete(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	ArrayType  *key;
	Oid			types[3] = {OIDOID, TEXTARRAYOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = "   ";
	StringInfoData seen;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pgvigil_aa.record_delete() must be an AFTER DELETE or AFTER TRUNCATE trigger")));
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		key = construct_empty_array(TEXTOID);
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event) && TRIGGER_FIRED_FOR_ROW(td->tg_event))
		key = deleted_key(td->tg_relation, td->tg_trigtuple);
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pgvigil_aa.record_delete() must be an AFTER DELETE or AFTER TRUNCATE trigger")));
	/* a table without a key: nothing could be matched to it later (its
	 * changes stop the apply worker, by name) */
	if (key == NULL)
		return PointerGetDatum(NULL);

	values[0] = ObjectIdGetDatum(RelationGetRelid(td->tg_relation));
	values[1] = PointerGetDatum(key);
	/* what the deleting node had seen: the peer's map when the apply worker
	 * deletes, this node's own otherwise */
	initStringInfo(&seen);
	if (aa_applying_seen)
		aa_seen_format(aa_applying_seen, &seen);
	else
		(void) aa_seen_text(MyDatabaseId, &seen);
	values[2] = CStringGetTextDatum(seen.data);
	nulls[2] = aa_applying_seen || aa_shared ? ' ' : 'n';
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* written again on a second delete: the row's xmin is the latest delete */
	if (SPI_execute_with_args("INSERT INTO pgvigil_aa.tombstones (relid, key, seen) VALUES ($1, $2, $3)"
							  " ON CONFLICT (relid, key) DO UPDATE SET seen = EXCLUDED.seen",
							  3, types, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "pgvigil_aa: recording a deleted key of \"%s\" failed", RelationGetRelationName(td->tg_relation));
	SPI_finish();
	return PointerGetDatum(NULL);
}
