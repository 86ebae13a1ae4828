/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_resolve.h
 *	  Which of two versions of a row wins a conflict, the same on every node.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGVIGIL_AA_RESOLVE_H
#define PGVIGIL_AA_RESOLVE_H

#include "postgres.h"

#include "datatype/timestamp.h"

/*
 * Last-writer-wins: the version committed later wins; on equal commit times
 * the one written by the node whose name sorts last (byte order) wins, so
 * that every node, seeing the same two versions, keeps the same one.
 */
extern bool aa_remote_wins_lww(TimestampTz local_ts, const char *local_node,
							   TimestampTz remote_ts, const char *remote_node);

#endif
