/* config: being written. */
#include "error.h"
