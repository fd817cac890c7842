#ifndef EMBER_EXAMPLES_BANDWIDTH_H
#define EMBER_EXAMPLES_BANDWIDTH_H

/* Best of 5 reads of a 1 GiB buffer split across `threads`, in GB/s (0
 * if the buffer cannot be allocated). */
double read_bandwidth(int threads);

#endif
