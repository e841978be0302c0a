/*
 * The WAL's pages leave the page cache once they are synced and a window
 * behind the end of the file. RocksDB writes the WAL through the page
 * cache and never reads it back outside recovery, and the files stay for
 * wal_ttl_seconds (kept for replicas), so every page of it would otherwise
 * sit in the cache for an hour while new WAL bytes take fresh pages. On a
 * virtual machine whose host takes back the guest's free memory a fresh
 * page costs a host fault: here 7.4-7.9 us of CPU per 4 KiB of WAL written
 * against 2.9-3.0 us when the writer drops what it synced and the kernel
 * hands the same pages back (a stand-alone WAL-shaped writer, 600-byte
 * records, fdatasync every 240 KB; PERFORMANCE-LOG.md, tenth session). On any
 * host it keeps write-once bytes out of the cache.
 *
 * The newest *.log in the data directory is the live WAL (RocksDB numbers
 * its files in increasing order). After a synced batch the writer drops
 * [dropped, size - WAL_DROP_KEEP) once that is at least WAL_DROP_STEP.
 * Every synced batch appends to the live WAL, so a followed file that did
 * not grow since the last one has been replaced: only then is the
 * directory read (it may hold thousands of tables), the newer WAL
 * followed and the older one dropped whole. The kept tail
 * is what a reader of recent batches (a replica catching up by
 * GetUpdatesSince) would find in memory. Only clean pages are dropped, so
 * this runs only when the sync policy syncs. Writer thread only.
 */
#define _GNU_SOURCE /* O_CLOEXEC, posix_fadvise */
#include "store/store_internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAL_DROP_KEEP (8u << 20) /* about 170 ms of WAL at 80,000 msg/s */
#define WAL_DROP_STEP (1u << 20)

void cn__wal_drop_init(cn__wal_drop_t *w)
{
    memset(w, 0, sizeof(*w));
    w->fd = -1;
}

void cn__wal_drop_dispose(cn__wal_drop_t *w)
{
    if (w->fd >= 0)
        close(w->fd);
    cn__wal_drop_init(w);
}

/* The number of "NNNNNN.log", or 0 for any other name. */
static uint64_t wal_number(const char *name)
{
    char *end;
    if (name[0] < '0' || name[0] > '9')
        return 0;
    unsigned long long n = strtoull(name, &end, 10);
    return strcmp(end, ".log") == 0 ? (uint64_t)n : 0;
}

/* Follows the newest WAL of dir; the one it replaces is dropped whole. */
static void follow_newest(cn__wal_drop_t *w, const char *dir)
{
    /* open + fdopendir rather than opendir: ThreadSanitizer then sees the
     * descriptor made here, not a number another thread closed before. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (d == NULL) {
        if (dfd >= 0)
            close(dfd);
        return;
    }
    uint64_t newest = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        uint64_t n = wal_number(e->d_name);
        if (n > newest)
            newest = n;
    }
    closedir(d);
    if (newest == 0 || newest == w->number)
        return;
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%06llu.log", dir, (unsigned long long)newest) >=
        (int)sizeof(path))
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return; /* gone already: the next scan finds its successor */
    if (w->fd >= 0) {
        (void)posix_fadvise(w->fd, 0, 0, POSIX_FADV_DONTNEED);
        close(w->fd);
    }
    w->fd = fd;
    w->number = newest;
    w->dropped = 0;
    w->size = 0;
}

static bool file_size(int fd, uint64_t *size)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return false;
    *size = (uint64_t)st.st_size;
    return true;
}

void cn__wal_drop_after_sync(cn__wal_drop_t *w, const char *dir)
{
    uint64_t size;
    if (!file_size(w->fd, &size) || size == w->size) {
        follow_newest(w, dir); /* first use, or the WAL was replaced */
        if (!file_size(w->fd, &size))
            return;
    }
    w->size = size;
    if (size < (uint64_t)WAL_DROP_KEEP + WAL_DROP_STEP ||
        size - WAL_DROP_KEEP < w->dropped + WAL_DROP_STEP)
        return;
    uint64_t end = (size - WAL_DROP_KEEP) & ~(uint64_t)4095;
    if (posix_fadvise(w->fd, (off_t)w->dropped, (off_t)(end - w->dropped), POSIX_FADV_DONTNEED) ==
        0)
        w->dropped = end;
}
