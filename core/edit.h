/* edit: changing the config of a live context (core-internal). */
#ifndef MC_CORE_EDIT_H
#define MC_CORE_EDIT_H

#include "context.h"

/* The editing calls are mailconn.h's (mc_context_put_server...); the swap
 * they end with is lifecycle.h's mc__context_swap_config. */
#include "lifecycle.h"

#endif
