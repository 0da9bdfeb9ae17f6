/* host: the mc_host_api table handed to every plugin (core-internal). */
#ifndef MC_CORE_HOST_H
#define MC_CORE_HOST_H

#include "mailconn/plugin.h"

/** The one host table of the process. */
const mc_host_api *mc__host(void);

#endif
