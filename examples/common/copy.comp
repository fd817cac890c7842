#version 450
// ember-bench's device bandwidth probe: dst = src in 16-byte words, each
// invocation striding over the whole buffer.
layout(local_size_x = 256) in;
layout(binding = 0) readonly buffer S { uvec4 src[]; };
layout(binding = 1) writeonly buffer D { uvec4 dst[]; };

void main() {
    uint n = uint(src.length()), stride = gl_NumWorkGroups.x * 256u;
    for (uint i = gl_GlobalInvocationID.x; i < n; i += stride) dst[i] = src[i];
}
