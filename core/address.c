/* address: being written. */
#include "error.h"
