/* message: being written. */
#include "error.h"
