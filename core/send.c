/* send: being written. */
#include "error.h"
