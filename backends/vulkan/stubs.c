/* The Vulkan backend when it is compiled out (or not implemented yet):
 * the symbols exist and say "not available". */
#include "../../lib/backend.h"

int em_vulkan_available(char *err) {
    return em_error(err, EMBER_ERR_NOT_AVAILABLE,
                    "backend: Vulkan is not available in this build of ember");
}

int em_vulkan_backend_create(const em_backend_config *cfg, const em_alloc *a, char *err,
                             em_backend **out) {
    (void)cfg;
    (void)a;
    *out = NULL;
    return em_vulkan_available(err);
}

const char *em_vulkan_device_name(const em_backend *b) {
    (void)b;
    return "";
}

void em_vulkan_record_stats(const em_backend *b, uint64_t *recorded, uint64_t *reused) {
    (void)b;
    *recorded = *reused = 0;
}

void em_vulkan_run_stats(const em_backend *b, uint64_t *commands, uint64_t *barriers) {
    (void)b;
    *commands = *barriers = 0;
}

uint32_t em_vulkan_dispatches(const em_backend *b, const char *prefix) {
    (void)b, (void)prefix;
    return 0;
}
