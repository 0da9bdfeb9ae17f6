/* secret: being written. */
#include "error.h"
