#include "CH2Version.h"

#ifndef H2_GIT_REVISION
#define H2_GIT_REVISION "unknown"
#endif

const char *h2_git_revision(void) { return H2_GIT_REVISION; }
