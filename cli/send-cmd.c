/* send commands: being written */
#include "mailconn/mailconn.h"
