/* smtp: being written. */
#include "error.h"
