/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_tombstone.h
 *	  Deleted keys, remembered so that a late change of a deleted row is
 *	  recognised as such.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGVIGIL_AA_TOMBSTONE_H
#define PGVIGIL_AA_TOMBSTONE_H

#include "postgres.h"

/*
 * Key values are kept as text written by the types' output functions under
 * fixed settings (date style, time zone, float digits...), so that a key
 * written in a client's session and the same key read by the apply worker
 * give the same text.
 *
 * aa_canonical_output_push: in effect until aa_canonical_output_pop (a
 * client's session, around one trigger call).
 * aa_canonical_output_always: for the rest of the process (the worker).
 */
extern int	aa_canonical_output_push(void);
extern void aa_canonical_output_pop(int nest_level);
extern void aa_canonical_output_always(void);

#endif
