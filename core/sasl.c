/* sasl: being written. */
#include "error.h"
