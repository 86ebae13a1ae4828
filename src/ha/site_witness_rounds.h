/* The witness threads' rounds, one at a time, on stores the caller gives: what the threads of
 * site_witness.c run on their own etcd clients, and what tests/unit/test_site_witness.c drives
 * step by step on in-memory stores. */
#ifndef PGVIGIL_SITE_WITNESS_ROUNDS_H
#define PGVIGIL_SITE_WITNESS_ROUNDS_H

#include "dcs/dcs.h"
#include "ha/site_witness.h"

typedef struct WitnessStores {
    Dcs *wit;   /* the witness, under the pair's prefix (SiteWitness.witness_prefix) */
    Dcs *peer;  /* the other site's etcd, under its prefix */
    Dcs *own;   /* this site's etcd, under its prefix */
} WitnessStores;

/* The state without threads (site_witness_free after). */
void site_witness_init(SiteWitness *w, const Config *cfg);
void site_witness_free(SiteWitness *w);
/* One round of part 0 (the witness; OBSERVE) or 1 (the other site's etcd) for in; no_wait: an
 * OBSERVE round claims at once when the other site looks gone (no claim wait). */
void site_witness_round(SiteWitness *w, WitnessStores *s, const WitnessInput *in, int part, bool no_wait);

/* site_witness_get without the check that the threads run. */
void site_witness_get_info(SiteWitness *w, WitnessInfo *out);

#endif
