/* loader: being written. */
#include "error.h"
