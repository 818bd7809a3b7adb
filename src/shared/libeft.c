/*
 * libeft.c — the anchor of libeft.so, the shared build of the library for the Python package
 * (ctypes) and other languages. Everything comes from the static library linked in whole; the
 * linker version script (libeft.map) exports the public eft_* API and hides the internal eft__*.
 */
#include "eft.h"

/* A shared library needs at least one object of its own. */
const char *eft__shared_build = "libeft";
