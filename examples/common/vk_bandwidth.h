#ifndef EMBER_EXAMPLES_VK_BANDWIDTH_H
#define EMBER_EXAMPLES_VK_BANDWIDTH_H

#include <stddef.h>

/* Copy bandwidth of Vulkan device `device` (bytes read + bytes written per
 * second, in GB/s) between two device buffers of `bytes`: best of 5
 * submissions of 8 copies. 0 if the device or the buffers cannot be had,
 * or when ember-bench was built without Vulkan. */
double vk_copy_bandwidth(int device, size_t bytes);

#endif
