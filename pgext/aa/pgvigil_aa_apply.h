/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_apply.h
 *	  What the apply worker's stream handling (pgvigil_aa_apply.c) and its
 *	  row changes (pgvigil_aa_change.c) share.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGVIGIL_AA_APPLY_H
#define PGVIGIL_AA_APPLY_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"

#define AA_ORIGIN_PREFIX "pgvigil_aa_"

/* the peer this worker applies from, and this node */
extern char aa_peer_name[NAMEDATALEN];
extern char aa_local_name[NAMEDATALEN];

/* this peer's entry in shared memory (NULL without shared_preload_libraries) */
struct AaPeerState;
extern struct AaPeerState *aa_my_state;

/* the commit time of the remote transaction being applied */
extern TimestampTz aa_remote_commit_ts;

/* SPI, inside a transaction: run sql, failing unless expect rows (-1: any) */
extern void aa_spi_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
						int expect);
extern char *aa_spi_text(int row, int col);

/* the node a replication origin name stands for ("" or NULL: this node) */
extern char *aa_origin_node(const char *roname);

/* start the apply worker of a peer (false: no background worker slot) */
struct BackgroundWorkerHandle;
extern bool aa_register_apply(Oid dbid, const char *peer, struct BackgroundWorkerHandle **handle);

/* pgvigil_aa_launcher.c: its GUC and background worker, registered at preload */
extern char *aa_database;
extern int	aa_receive_timeout;		/* pgvigil_aa.receive_timeout, ms (0 none) */
extern void aa_launcher_register(void);

/* pgvigil_aa_change.c: the peer's relations and its row changes */
extern void aa_relations_init(MemoryContext cxt);
extern void aa_handle_relation(StringInfo s);
extern void aa_apply_insert(StringInfo s);
extern void aa_apply_update(StringInfo s);
extern void aa_apply_delete(StringInfo s);
extern void aa_apply_truncate(StringInfo s);
extern void aa_change_begin_transaction(void);
extern bool aa_change_skip_failed_ddl(const char *stmt, const char *error);
extern void aa_change_end_transaction(void);	/* SPI connected, before the commit */

#endif
