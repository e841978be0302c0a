#include "common/cn_common.h"

#include <sys/prctl.h>

void cn_thread_name(const char *name)
{
    /* Linux keeps 15 bytes; a longer name is cut, never an error worth
     * reporting (the name is only for top -H, perf and chatbench). */
    CN_IGNORE(prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0));
}
