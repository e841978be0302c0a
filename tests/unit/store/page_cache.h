/* What of a store's files the page cache holds (tests only). */
#ifndef CN_TEST_PAGE_CACHE_H
#define CN_TEST_PAGE_CACHE_H

#include <stddef.h>

/** Resident page-cache bytes and total bytes of dir's *.log (WAL) files;
 * 0, or -1 when a file cannot be read or mapped. */
int cn_test_wal_residency(const char *dir, size_t *resident, size_t *total);

#endif
