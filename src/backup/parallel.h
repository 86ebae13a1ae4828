/* A parallel loop over items for the backup and restore workers: fn runs once per item, on
 * `workers` threads; the first failure stops the others from taking new items and its error is
 * the loop's. fn learns which worker runs it (0 to workers - 1; never two items at once on one
 * worker), for buffers that each worker keeps from one item to the next. */
#ifndef PGVIGIL_PARALLEL_H
#define PGVIGIL_PARALLEL_H

#include "common/common.h"

bool parallel_for(int n_items, int workers, bool (*fn)(void *ctx, int worker, int item, Err *err), void *ctx,
                  Err *err);

#endif
