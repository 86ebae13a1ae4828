/* A parallel loop over items for the backup and restore workers: fn runs once per item, on
 * `workers` threads; the first failure stops the others from taking new items and its error is
 * the loop's. */
#ifndef PGVIGIL_PARALLEL_H
#define PGVIGIL_PARALLEL_H

#include "common/common.h"

bool parallel_for(int n_items, int workers, bool (*fn)(void *ctx, int item, Err *err), void *ctx, Err *err);

#endif
