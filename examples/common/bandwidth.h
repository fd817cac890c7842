#ifndef EMBER_EXAMPLES_BANDWIDTH_H
#define EMBER_EXAMPLES_BANDWIDTH_H

/* Memory read bandwidth, measured with `threads` threads each reading its
 * share of a 1 GiB buffer.
 *
 * A shared machine's bandwidth moves over seconds (other tenants), by up
 * to 2x on the VMs this was written on, so a figure measured once at the
 * start of a benchmark can be far from the one its decode runs met. A
 * probe keeps its buffer so the benchmark can measure right next to each
 * decode repetition. */
typedef struct bw_probe bw_probe;

/* Allocates and fills the buffer; NULL if memory is short. */
bw_probe *bw_probe_new(int threads);
/* Best of `reps` full reads of the buffer, in GB/s. */
double bw_probe_read(bw_probe *p, int reps);
void bw_probe_free(bw_probe *p);

/* One probe, best of 5 reads (0 if the buffer cannot be allocated). */
double read_bandwidth(int threads);

#endif
