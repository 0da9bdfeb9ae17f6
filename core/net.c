/* net: being written. */
#include "error.h"
