#!/usr/bin/env bash
# Instructions per kernel call at each dispatch level, counted under
# qemu-user (one instruction per translation block, every block's
# execution logged), since qemu's time is not hardware time.
#
#   scripts/qemu-kernel-counts.sh BUILD_DIR aarch64|riscv64 [K]
#
# BUILD_DIR is a cross build (cross/*.ini, -Dstatic_programs=true) with
# tests/kernel_calls. Prints one line per kernel and level: instructions
# per call, per weight, and the speedup over the C reference (level 0).
set -euo pipefail
# KERNELS="q8_0 q4_0" limits the list
build=$1 arch=$2 K=${3:-4096} N=4
case $arch in
    aarch64) qemu=(qemu-aarch64 -cpu max)
             levels="0 256 768" kernels="q8_0 q4_0 q4_k q6_k f16 f32 quant" ;;
    riscv64) qemu=(qemu-riscv64 -cpu rv64,v=true,vlen=256,elen=64,vext_spec=v1.0)
             levels="0 65536" kernels="q8_0 q4_0" ;;
    *) echo "arch: aarch64 or riscv64" >&2; exit 2 ;;
esac
tool=$build/tests/kernel_calls
count() { # level kernel calls -> executed instructions
    "${qemu[@]}" -singlestep -d nochain,exec -D /dev/stdout "$tool" "$1" "$2" "$K" "$3" \
        | grep -c '^Trace'
}
printf '%-6s %-6s %14s %12s %8s\n' kernel level insn/call insn/weight speedup
for k in ${KERNELS:-$kernels}; do
    base=
    for l in $levels; do
        c0=$(count "$l" "$k" 0) cn=$(count "$l" "$k" "$N")
        per=$(( (cn - c0) / N ))
        [ -z "$base" ] && base=$per
        # a level without its own kernel for this slot runs the reference
        awk -v k="$k" -v l="$l" -v p="$per" -v K="$K" -v b="$base" \
            'BEGIN { printf "%-6s %-6s %14d %12.2f %7.1fx\n", k, l, p, p / K, b / p }'
    done
done
