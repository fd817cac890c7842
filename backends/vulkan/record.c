/* Runs as command lists, and the command buffers recorded from them kept
 * for reuse: decoding runs the same graph shape token after token, and
 * recording a few hundred dispatches (descriptor writes included) costs
 * more than a small GPU needs to run them. A run's list is built without
 * any Vulkan call; at submit it is compared with the lists of the last
 * EM_VK_CACHED runs, and an equal one's command buffer is submitted again.
 * Everything a command reads per run (inputs, positions, block tables)
 * lives in buffers, not in the commands, so equal lists mean equal work. */
#include <stdio.h>
#include <string.h>

#include "vk.h"

static int grow_list(em_vk *vk, em_vk_rec **list, uint32_t *cap, uint32_t n) {
    if (n <= *cap) return EMBER_OK;
    em_vk_rec *l = em_calloc(vk->alloc, n, sizeof *l);
    if (!l) return em_error(vk->err, EMBER_ERR_NO_MEMORY, "vulkan: no memory for a command list");
    em_free(vk->alloc, *list);
    *list = l;
    *cap = n;
    return EMBER_OK;
}

int em_vk_begin(em_vk *vk, uint32_t max_commands) {
    if (vk->recording) return em_error(vk->err, EMBER_ERR_BAD_STATE, "vulkan: already recording");
    int rc = grow_list(vk, &vk->rec, &vk->rec_cap, max_commands ? max_commands : 1);
    if (rc) return rc;
    vk->n_rec = 0;
    vk->recording = true;
    return EMBER_OK;
}

static em_vk_rec *next_rec(em_vk *vk) {
    if (!vk->recording) {
        em_error(vk->err, EMBER_ERR_BAD_STATE, "vulkan: not recording");
        return NULL;
    }
    if (vk->n_rec >= vk->rec_cap) {
        em_error(vk->err, EMBER_ERR_INTERNAL, "vulkan: more commands than the %u reserved",
                 vk->rec_cap);
        return NULL;
    }
    em_vk_rec *r = &vk->rec[vk->n_rec++];
    memset(r, 0, sizeof *r);
    return r;
}

/* [lo, hi) of ref f in the buffer: its bytes, or to the buffer's end */
static void span_of(const em_vk_ref *f, VkDeviceSize *lo, VkDeviceSize *hi) {
    *lo = f->off;
    *hi = f->bytes && f->off + f->bytes <= f->buf->size ? f->off + f->bytes : f->buf->size;
}

/* Whether pipe's name starts with one of EMBER_VULKAN_SKIP's names. */
static bool skipped(const em_vk *vk, em_vk_pipe pipe) {
    char buf[32];
    const char *name = em_vk_pipe_name((int)pipe, buf), *s = vk->skip;
    while (*s) {
        size_t n = strcspn(s, ",");
        if (n && strncmp(name, s, n) == 0) return true;
        s += n + (s[n] == ',');
    }
    return false;
}

int em_vk_dispatch_w(em_vk *vk, em_vk_pipe pipe, const em_vk_ref refs[EM_VK_BINDINGS],
                     uint32_t *push, size_t push_bytes, const uint32_t groups[3], uint32_t writes) {
    uint32_t gx = groups[0], gy = groups[1], gz = groups[2];
    if (gx > vk->max_groups[0] || gy > vk->max_groups[1] || gz > vk->max_groups[2])
        return em_error(vk->err, EMBER_ERR_UNSUPPORTED,
                        "vulkan: %u x %u x %u workgroups exceed the device's limits", gx, gy, gz);
    if (gx == 0 || gy == 0 || gz == 0) return EMBER_OK; /* nothing to do */
    if (vk->skip && skipped(vk, pipe)) return EMBER_OK;
    int rc = em_vk_pipeline(vk, pipe);
    if (rc) return rc;
    em_vk_rec *r = next_rec(vk);
    if (!r) return vk->recording ? EMBER_ERR_INTERNAL : EMBER_ERR_BAD_STATE;
    r->pipe = (uint32_t)pipe;
    r->writes = writes | 1u << 3;
    r->groups[0] = gx, r->groups[1] = gy, r->groups[2] = gz;
    for (int i = 0; i < EM_VK_BINDINGS; i++) {
        /* unused bindings repeat binding 0: every binding must be valid */
        const em_vk_ref *f = refs[i].buf ? &refs[i] : &refs[0];
        size_t base = f->off / vk->min_align * vk->min_align;
        size_t room = f->buf->size - base;
        r->buf[i] = f->buf->buf;
        r->base[i] = base;
        r->range[i] = room < vk->max_range ? room : vk->max_range;
        if (i < EM_VK_OFFSET_WORDS) push[i] = (uint32_t)((f->off - base) / 4);
        else if (f->off != base && refs[i].buf) {
            vk->n_rec--;
            return em_error(vk->err, EMBER_ERR_INTERNAL, "vulkan: binding %d at an unaligned "
                            "offset", i);
        }
        span_of(f, &r->lo[i], &r->hi[i]);
    }
    r->push_bytes = (uint32_t)push_bytes;
    memcpy(r->push, push, push_bytes);
    return EMBER_OK;
}

int em_vk_dispatch_indirect(em_vk *vk, em_vk_pipe pipe, const em_vk_ref refs[EM_VK_BINDINGS],
                            uint32_t *push, size_t push_bytes, const uint32_t most[3],
                            uint32_t writes, const em_vk_buf *args, size_t off) {
    uint32_t n = vk->n_rec;
    int rc = em_vk_dispatch_w(vk, pipe, refs, push, push_bytes, most, writes);
    if (rc || vk->n_rec == n) return rc;
    vk->rec[n].ind_buf = args->buf;
    vk->rec[n].ind_off = off;
    return EMBER_OK;
}

int em_vk_dispatch(em_vk *vk, em_vk_pipe pipe, const em_vk_ref refs[EM_VK_BINDINGS],
                   uint32_t *push, size_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz) {
    return em_vk_dispatch_w(vk, pipe, refs, push, push_bytes, (uint32_t[3]){ gx, gy, gz }, 0);
}

int em_vk_copy(em_vk *vk, const em_vk_buf *src, size_t soff, const em_vk_buf *dst, size_t doff,
               size_t n) {
    if (n == 0) return EMBER_OK;
    em_vk_rec *r = next_rec(vk);
    if (!r) return vk->recording ? EMBER_ERR_INTERNAL : EMBER_ERR_BAD_STATE;
    r->copy = 1;
    r->writes = 1u << 3;
    r->buf[0] = src->buf, r->base[0] = soff;
    r->buf[1] = dst->buf, r->base[1] = doff;
    r->range[0] = n;
    r->lo[0] = soff, r->hi[0] = soff + n;
    r->buf[3] = dst->buf, r->lo[3] = doff, r->hi[3] = doff + n;
    return EMBER_OK;
}

static bool overlap(VkBuffer a, VkDeviceSize alo, VkDeviceSize ahi, VkBuffer b, VkDeviceSize blo,
                    VkDeviceSize bhi) {
    return a == b && alo < bhi && blo < ahi;
}

/* Whether bindings a of command c and b of command e touch common bytes. */
static bool touch(const em_vk_rec *c, int a, const em_vk_rec *e, int b) {
    return overlap(c->buf[a], c->lo[a], c->hi[a], e->buf[b], e->lo[b], e->hi[b]);
}

/* Whether command c reads binding i: a copy reads binding 0; a dispatch
 * every binding it does not write. */
static bool reads(const em_vk_rec *c, int i) {
    return c->copy ? i == 0 : !(c->writes >> i & 1u);
}

/* Whether command i must wait for a command in [from, i), those recorded
 * since the last barrier: it reads what one wrote, or writes what one
 * read or wrote. Scanning back keeps no extra state: recording happens
 * once per graph shape. */
static bool needs_barrier(const em_vk *vk, uint32_t from, uint32_t i) {
    const em_vk_rec *c = &vk->rec[i];
    for (uint32_t j = from; j < i; j++) {
        const em_vk_rec *e = &vk->rec[j];
        for (int a = 0; a < EM_VK_BINDINGS; a++)
            for (int b = 0; b < EM_VK_BINDINGS; b++) {
                bool cw = c->writes >> a & 1u, ew = e->writes >> b & 1u;
                if ((cw || ew) && (cw || reads(c, a)) && (ew || reads(e, b)) && touch(c, a, e, b))
                    return true;
            }
    }
    return false;
}

/* A descriptor pool for n sets: reset when big enough, else replaced. */
static int pool_for(em_vk *vk, em_vk_cached *c, uint32_t n) {
    if (c->pool && n <= c->pool_sets) {
        VK_TRY(vkResetDescriptorPool(vk->dev, c->pool, 0), "vkResetDescriptorPool");
        return EMBER_OK;
    }
    if (c->pool) vkDestroyDescriptorPool(vk->dev, c->pool, NULL);
    c->pool = VK_NULL_HANDLE;
    c->pool_sets = 0;
    VkDescriptorPoolSize ps = { VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, n * EM_VK_BINDINGS };
    VkDescriptorPoolCreateInfo ci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                      .maxSets = n,
                                      .poolSizeCount = 1,
                                      .pPoolSizes = &ps };
    VK_TRY(vkCreateDescriptorPool(vk->dev, &ci, NULL, &c->pool), "vkCreateDescriptorPool");
    c->pool_sets = n;
    return EMBER_OK;
}

static int record_dispatch(em_vk *vk, em_vk_cached *c, const em_vk_rec *r) {
    VkDescriptorSetAllocateInfo ai = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                       .descriptorPool = c->pool,
                                       .descriptorSetCount = 1,
                                       .pSetLayouts = &vk->set_layout };
    VkDescriptorSet set;
    VK_TRY(vkAllocateDescriptorSets(vk->dev, &ai, &set), "vkAllocateDescriptorSets");
    VkDescriptorBufferInfo bi[EM_VK_BINDINGS];
    VkWriteDescriptorSet w[EM_VK_BINDINGS];
    for (int i = 0; i < EM_VK_BINDINGS; i++) {
        bi[i] = (VkDescriptorBufferInfo){ r->buf[i], r->base[i], r->range[i] };
        w[i] = (VkWriteDescriptorSet){ .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                       .dstSet = set,
                                       .dstBinding = (uint32_t)i,
                                       .descriptorCount = 1,
                                       .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                       .pBufferInfo = &bi[i] };
    }
    vkUpdateDescriptorSets(vk->dev, EM_VK_BINDINGS, w, 0, NULL);
    vkCmdBindPipeline(c->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, vk->pipes[r->pipe]);
    vkCmdBindDescriptorSets(c->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, vk->pipe_layout, 0, 1, &set,
                            0, NULL);
    vkCmdPushConstants(c->cmd, vk->pipe_layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, r->push_bytes,
                       r->push);
    if (r->ind_buf) vkCmdDispatchIndirect(c->cmd, r->ind_buf, r->ind_off);
    else vkCmdDispatch(c->cmd, r->groups[0], r->groups[1], r->groups[2]);
    return EMBER_OK;
}

/* Commands after it see the writes of commands before it (compute or
 * copy); the final one makes copies into host-visible memory readable. */
static void barrier(VkCommandBuffer cmd, bool last) {
    VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
    VkMemoryBarrier mb = { .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                           .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                           .dstAccessMask = last ? VK_ACCESS_HOST_READ_BIT
                                                 : VK_ACCESS_SHADER_READ_BIT |
                                                       VK_ACCESS_SHADER_WRITE_BIT |
                                                       VK_ACCESS_TRANSFER_READ_BIT |
                                                       VK_ACCESS_TRANSFER_WRITE_BIT };
    vkCmdPipelineBarrier(cmd, stages, last ? VK_PIPELINE_STAGE_HOST_BIT : stages, 0, 1, &mb, 0,
                         NULL, 0, NULL);
}

/* Profiling: a query pool with a timestamp slot per command plus one. */
static int profile_pool(em_vk *vk, em_vk_cached *c, uint32_t n) {
    if (c->queries && c->n_queries >= n) return EMBER_OK;
    if (c->queries) vkDestroyQueryPool(vk->dev, c->queries, NULL);
    c->queries = VK_NULL_HANDLE;
    VkQueryPoolCreateInfo qi = { .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                 .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                 .queryCount = n };
    VK_TRY(vkCreateQueryPool(vk->dev, &qi, NULL, &c->queries), "vkCreateQueryPool");
    c->n_queries = n;
    return EMBER_OK;
}

static void stamp(const em_vk *vk, const em_vk_cached *c, uint32_t q) {
    if (vk->prof.on)
        vkCmdWriteTimestamp(c->cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, c->queries, q);
}

static int record(em_vk *vk, em_vk_cached *c) {
    uint32_t sets = 0;
    for (uint32_t i = 0; i < vk->n_rec; i++) sets += !vk->rec[i].copy;
    int rc = pool_for(vk, c, sets ? sets : 1);
    if (!rc && vk->prof.on) rc = profile_pool(vk, c, vk->n_rec + 1);
    if (!rc && vk->prof.levels) {
        em_free(vk->alloc, c->level_at);
        c->level_at = em_calloc(vk->alloc, (size_t)vk->n_rec + 2, sizeof *c->level_at);
        if (!c->level_at) rc = em_error(vk->err, EMBER_ERR_NO_MEMORY, "vulkan: profile levels");
    }
    if (rc) return rc;
    if (!c->cmd && (rc = em_vk_cmd_alloc(vk, &c->cmd))) return rc;
    VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO };
    VK_TRY(vkResetCommandBuffer(c->cmd, 0), "vkResetCommandBuffer");
    VK_TRY(vkBeginCommandBuffer(c->cmd, &bi), "vkBeginCommandBuffer");
    if (vk->prof.on) vkCmdResetQueryPool(c->cmd, c->queries, 0, vk->n_rec + 1);
    stamp(vk, c, 0);
    uint32_t from = 0; /* first command after the last barrier */
    bool levels = vk->prof.levels;
    c->barriers = 0;
    c->n_levels = 0;
    for (uint32_t i = 0; i < vk->n_rec && !rc; i++) {
        const em_vk_rec *r = &vk->rec[i];
        if (i > from && ((vk->prof.on && !levels) || needs_barrier(vk, from, i))) {
            if (levels) { /* the level [from, i) ends */
                stamp(vk, c, c->n_levels + 1);
                c->level_at[c->n_levels++] = from;
            }
            if (!vk->no_barriers) barrier(c->cmd, false);
            from = i;
            c->barriers++;
        }
        if (r->copy) {
            VkBufferCopy bc = { r->base[0], r->base[1], r->range[0] };
            vkCmdCopyBuffer(c->cmd, r->buf[0], r->buf[1], 1, &bc);
        } else {
            rc = record_dispatch(vk, c, r);
        }
        if (!levels) stamp(vk, c, i + 1);
    }
    if (levels && vk->n_rec) {
        stamp(vk, c, c->n_levels + 1);
        c->level_at[c->n_levels++] = from;
        c->level_at[c->n_levels] = vk->n_rec;
    }
    barrier(c->cmd, true);
    VkResult r = vkEndCommandBuffer(c->cmd);
    if (rc) return rc;
    if (r != VK_SUCCESS) return em_vk_fail(vk->err, r, "vkEndCommandBuffer");
    /* the list it was recorded from, to recognise the next equal run */
    if ((rc = grow_list(vk, &c->list, &c->cap, vk->n_rec))) return rc;
    memcpy(c->list, vk->rec, (size_t)vk->n_rec * sizeof *vk->rec);
    c->n = vk->n_rec;
    return EMBER_OK;
}

/* The run's timestamps into the profile's sums (skipped when there is
 * no memory for them: a diagnostic never fails a run). */
/* Level l of c's run into the sums of its kind (its pipelines' names). */
static void level_add(em_vk *vk, const em_vk_cached *c, uint32_t l, double ns) {
    char name[96] = "", nm[32];
    size_t len = 0;
    for (uint32_t i = c->level_at[l]; i < c->level_at[l + 1] && len + 1 < sizeof name; i++) {
        const em_vk_rec *r = &c->list[i];
        int w = snprintf(name + len, sizeof name - len, "%s%s", i > c->level_at[l] ? "+" : "",
                         em_vk_pipe_name(r->copy ? EM_VK_PIPE_COUNT : (int)r->pipe, nm));
        if (w < 0) break;
        len += (size_t)w < sizeof name - len ? (size_t)w : sizeof name - len - 1;
    }
    em_vk_profile *p = &vk->prof;
    uint32_t k = 0;
    while (k < p->n_kinds && strcmp(p->kinds[k].name, name)) k++;
    if (k == p->n_kinds) {
        if (k == EM_VK_LEVEL_KINDS) return;
        memcpy(p->kinds[k].name, name, sizeof name);
        p->n_kinds++;
    }
    p->kinds[k].ns += ns;
    p->kinds[k].count++;
}

static void profile_add(em_vk *vk, const em_vk_cached *c) {
    uint32_t n = (vk->prof.levels ? c->n_levels : c->n) + 1;
    uint64_t *ts = em_malloc(vk->alloc, (size_t)n * sizeof *ts);
    if (!ts) return;
    if (vkGetQueryPoolResults(vk->dev, c->queries, 0, n, (size_t)n * sizeof *ts, ts, sizeof *ts,
                              VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) == VK_SUCCESS) {
        em_vk_profile *p = &vk->prof;
        for (uint32_t i = 1; i < n && p->levels; i++)
            level_add(vk, c, i - 1, (double)(ts[i] - ts[i - 1]) * p->ns_per_tick);
        for (uint32_t i = 1; i < n && !p->levels; i++) {
            const em_vk_rec *r = &c->list[i - 1];
            uint32_t slot = r->copy ? EM_VK_PIPE_COUNT : r->pipe;
            p->ns[slot] += (double)(ts[i] - ts[i - 1]) * p->ns_per_tick;
            p->calls[slot]++;
        }
        p->run_ns += (double)(ts[n - 1] - ts[0]) * p->ns_per_tick;
        p->runs++;
    }
    em_free(vk->alloc, ts);
}

static em_vk_cached *find_equal(em_vk *vk) {
    for (int i = 0; i < EM_VK_CACHED; i++) {
        em_vk_cached *c = &vk->cache[i];
        if (c->used && c->n == vk->n_rec &&
            memcmp(c->list, vk->rec, (size_t)vk->n_rec * sizeof *vk->rec) == 0)
            return c;
    }
    return NULL;
}

static em_vk_cached *least_recent(em_vk *vk) {
    em_vk_cached *best = &vk->cache[0];
    for (int i = 1; i < EM_VK_CACHED; i++)
        if (vk->cache[i].used < best->used) best = &vk->cache[i];
    return best;
}

int em_vk_submit(em_vk *vk) {
    if (!vk->recording) return em_error(vk->err, EMBER_ERR_BAD_STATE, "vulkan: not recording");
    vk->recording = false;
    if (vk->n_rec == 0) return EMBER_OK;
    em_vk_cached *c = find_equal(vk);
    if (c) {
        vk->reused++;
    } else {
        c = least_recent(vk);
        c->used = 0; /* not reusable unless recorded in full */
        int rc = record(vk, c);
        if (rc) return rc;
        vk->recorded++;
    }
    c->used = ++vk->tick;
    vk->commands = c->n, vk->barriers = c->barriers;
    int rc = em_vk_submit_wait(vk, c->cmd, "submitting the graph");
    if (!rc && vk->prof.on) profile_add(vk, c);
    return rc;
}

void em_vk_cache_clear(em_vk *vk) {
    for (int i = 0; i < EM_VK_CACHED; i++) vk->cache[i].used = 0, vk->cache[i].n = 0;
}

void em_vk_record_free(em_vk *vk) {
    for (int i = 0; i < EM_VK_CACHED; i++) {
        em_vk_cached *c = &vk->cache[i];
        if (c->pool) vkDestroyDescriptorPool(vk->dev, c->pool, NULL);
        if (c->cmd) vkFreeCommandBuffers(vk->dev, vk->cmd_pool, 1, &c->cmd);
        if (c->queries) vkDestroyQueryPool(vk->dev, c->queries, NULL);
        em_free(vk->alloc, c->list);
        em_free(vk->alloc, c->level_at);
        memset(c, 0, sizeof *c);
    }
    em_free(vk->alloc, vk->rec);
    vk->rec = NULL;
    vk->n_rec = vk->rec_cap = 0;
}

void em_vk_profile_print(const em_vk *vk) {
    const em_vk_profile *p = &vk->prof;
    if (!p->on || !p->runs) return;
    fprintf(stderr, "ember vulkan profile: %llu runs, %.1f us of GPU time per run (%s)\n", (unsigned long long)p->runs,
            p->run_ns / 1e3 / (double)p->runs,
            p->levels ? "by barrier levels" : "each command behind a full barrier");
    char nm[32];
    for (uint32_t k = 0; k < p->n_kinds; k++)
        fprintf(stderr, "  level %-60s %8.1f us per run, %6.2f us each, %llu\n", p->kinds[k].name,
                p->kinds[k].ns / 1e3 / (double)p->runs, p->kinds[k].ns / 1e3 / (double)p->kinds[k].count,
                (unsigned long long)p->kinds[k].count);
    for (int i = 0; i <= EM_VK_PIPE_COUNT; i++)
        if (p->calls[i])
            fprintf(stderr, "  %-14s %8.1f us per run, %6.2f us per call, %llu calls\n",
                    em_vk_pipe_name(i, nm), p->ns[i] / 1e3 / (double)p->runs, p->ns[i] / 1e3 / (double)p->calls[i],
                    (unsigned long long)p->calls[i]);
}
