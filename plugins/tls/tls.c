/* being written */
#include "mailconn/plugin.h"
