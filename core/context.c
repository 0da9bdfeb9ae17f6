/* context: being written. */
#include "error.h"
