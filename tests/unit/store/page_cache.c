/* mincore() over a read-only mapping of each WAL file (its own file: the
 * declaration needs _DEFAULT_SOURCE, which the tests' headers must not see). */
#define _DEFAULT_SOURCE
#include "tests/unit/store/page_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int file_residency(const char *path, size_t *resident, size_t *total)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    int rc = fstat(fd, &st);
    size_t size = rc == 0 ? (size_t)st.st_size : 0, page = (size_t)sysconf(_SC_PAGESIZE);
    if (rc == 0 && size > 0) {
        size_t pages = (size + page - 1) / page;
        unsigned char *vec = malloc(pages);
        void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        rc = vec && m != MAP_FAILED && mincore(m, size, vec) == 0 ? 0 : -1;
        for (size_t i = 0; rc == 0 && i < pages; i++)
            *resident += (vec[i] & 1) ? page : 0;
        if (m != MAP_FAILED)
            munmap(m, size);
        free(vec);
    }
    *total += size;
    close(fd);
    return rc;
}

int cn_test_wal_residency(const char *dir, size_t *resident, size_t *total)
{
    *resident = *total = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d)) != NULL;) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".log") != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        rc = file_residency(path, resident, total);
    }
    closedir(d);
    return rc;
}
