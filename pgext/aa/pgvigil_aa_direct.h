/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_direct.h
 *	  A peer's row changes applied through the table and index access
 *	  methods, without a statement (pgvigil_aa_direct.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGVIGIL_AA_DIRECT_H
#define PGVIGIL_AA_DIRECT_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "replication/logicalproto.h"

typedef struct AaDirectRel AaDirectRel;

/*
 * What the direct path needs of a table, or NULL when its changes must go
 * through statements: not a plain table, a column here the peer does not
 * send, a generated column, a unique index besides the key, or a trigger
 * that fires for the apply other than the tombstone's.  localatt: the local
 * column of each remote one.  Allocated in the current memory context.
 */
extern AaDirectRel *aa_direct_prepare(Oid relid, LogicalRepRelation *remote, const AttrNumber *localatt);

/* Find the row of keytup's key and lock it, as SELECT ... FOR UPDATE
 * would; false when there is none.  *xmin: the transaction that wrote the
 * version found.  *usable false (and nothing done): the table does not
 * qualify in this transaction, its changes go through statements. */
extern bool aa_direct_find(AaDirectRel *d, LogicalRepTupleData *keytup, TransactionId *xmin, bool *usable);

/* (After aa_direct_find said usable.)  Update the row it found to newtup (columns the peer left
 * out unchanged keep their value here), or delete it. */
extern void aa_direct_update_found(AaDirectRel *d, LogicalRepTupleData *newtup);
extern void aa_direct_delete_found(AaDirectRel *d);

/* The row aa_direct_find found, let go (its page's pin) when the change
 * goes to the statements instead. */
extern void aa_direct_release(AaDirectRel *d);

/* Insert tup (every column sent); false, with nothing written, when a row
 * is in its way on a unique index. */
extern bool aa_direct_insert(AaDirectRel *d, LogicalRepTupleData *tup);

/* The writers of the key's tombstones (key, or the whole table's), at most
 * two; returns how many. */
extern int	aa_direct_tombstones(AaDirectRel *d, Datum key_array, TransactionId *xmins);

/* The peer's row of pgvigil_aa.peers: applied_commit_ts raised to
 * commit_ts (never lowered), applied_lsn set, in this transaction. */
extern void aa_direct_note_applied(const char *peer, TimestampTz commit_ts, XLogRecPtr lsn);

/* The executor states of this transaction, closed: before its commit, and
 * before a statement that needs its tables unused (DDL, TRUNCATE). */
extern void aa_direct_close_all(void);

/* A new remote transaction: nothing open (what a failed one left went with
 * its memory). */
extern void aa_direct_forget(void);

#endif
