/* vk_copy_bandwidth without the Vulkan loader: nothing to measure. */
#include "vk_bandwidth.h"

double vk_copy_bandwidth(int device, size_t bytes) {
    (void)device;
    (void)bytes;
    return 0;
}
