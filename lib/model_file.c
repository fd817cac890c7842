/* ember_model_load_file: map the file read-only; where mmap is not
 * possible (it failed, or the platform has none) read it into a buffer
 * from the model's allocator, coping with short reads. */
#include <stdio.h>
#include <string.h>

#include "model.h"

#if defined(__unix__) || defined(__APPLE__)
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, long off) {
    return mmap(addr, len, prot, flags, fd, (off_t)off);
}

static long sys_read(int fd, void *buf, size_t n) { return (long)read(fd, buf, n); }

em_io_hooks em_io = { sys_mmap, sys_read };

void em_image_release(em_image_owner *o, const em_alloc *a) {
    if (o->map) munmap(o->map, o->map_size);
    em_free_aligned(a, o->buffer);
    memset(o, 0, sizeof *o);
}

/* Reads exactly size bytes, retrying on EINTR and short reads. */
static int read_all(int fd, void *buf, size_t size, const char *path) {
    size_t got = 0;
    while (got < size) {
        long r = em_io.read_fn(fd, (char *)buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return em_error(NULL, EMBER_ERR_IO, "model: reading '%s' failed after %zu of %zu "
                            "bytes: %s", path, got, size, strerror(errno));
        if (r == 0)
            return em_error(NULL, EMBER_ERR_IO, "model: short read of '%s': the file ended "
                            "after %zu of %zu bytes", path, got, size);
        got += (size_t)r;
    }
    return EMBER_OK;
}

static int load_mapped_or_read(int fd, size_t size, const char *path,
                               const ember_model_params *params, ember_model **out) {
    em_image_owner owner = { 0 };
    void *data = em_io.mmap_fn(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (data != MAP_FAILED) {
        owner.map = data;
        owner.map_size = size;
    } else {
        em_log(EMBER_LOG_INFO, "model: mmap of '%s' failed (%s): reading it", path,
               strerror(errno));
        em_alloc a;
        em_model_params_alloc(params, &a);
        if (!(data = owner.buffer = em_malloc_aligned(&a, size, 64)))
            return em_error(NULL, EMBER_ERR_NO_MEMORY, "model: no memory to read '%s' (%zu "
                            "bytes)", path, size);
        int rc = read_all(fd, data, size, path);
        if (rc) {
            em_image_release(&owner, &a);
            return rc;
        }
    }
    int rc = em_model_load_image(data, size, params, &owner, out);
    if (rc) {
        em_alloc a;
        em_model_params_alloc(params, &a);
        em_image_release(&owner, &a);
    }
    return rc;
}

EMBER_API int ember_model_load_file(const char *path, const ember_model_params *params,
                                    ember_model **out) {
    if (!out) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "model: out is NULL");
    *out = NULL;
    if (!path) return em_error(NULL, EMBER_ERR_INVALID_ARGUMENT, "model: path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return em_error(NULL, EMBER_ERR_IO, "model: cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
        close(fd);
        return em_error(NULL, EMBER_ERR_IO, "model: '%s' is not a non-empty regular file", path);
    }
    int rc = load_mapped_or_read(fd, (size_t)st.st_size, path, params, out);
    close(fd);
    if (rc && rc != EMBER_ERR_IO) {
        /* keep the message, and say which file */
        char msg[EM_ERRMSG_SIZE];
        snprintf(msg, sizeof msg, "%s", ember_last_error());
        em_error(NULL, rc, "%s: %s", path, msg);
    }
    return rc;
}

#else /* no file system */

void em_image_release(em_image_owner *o, const em_alloc *a) {
    em_free_aligned(a, o->buffer);
    memset(o, 0, sizeof *o);
}

EMBER_API int ember_model_load_file(const char *path, const ember_model_params *params,
                                    ember_model **out) {
    (void)path;
    (void)params;
    if (out) *out = NULL;
    return em_error(NULL, EMBER_ERR_NOT_AVAILABLE, "model: no file system in this build; use "
                    "ember_model_load_memory");
}

#endif
