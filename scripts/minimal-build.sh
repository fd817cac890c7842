#!/usr/bin/env bash
# The minimal build (README: "Minimal static build"): every optional
# dependency off, no threads, a static libember.a that needs only libc and
# libm; checks that and the size budgets, and runs the embedded example.
#
#   scripts/minimal-build.sh BUILD_DIR [MODEL.gguf]
set -euo pipefail
build=$1 model=${2:-}
# budgets set from the measured sizes (x86-64, GCC 12, release) plus ~20%
lib_budget=$((560 * 1024))      # measured 469,304 bytes without debug info
exe_budget=$((1200 * 1024))     # measured 978,120 (stripped, model excluded)
rm -rf "$build"
meson setup "$build" -Dbuildtype=release -Ddefault_library=static -Dthreads=disabled \
    -Dvulkan=disabled -Dblas=disabled -Ddnnl=disabled -Dtests=false \
    ${model:+-Dembedded_model="$model"} >/dev/null
meson compile -C "$build" >/dev/null
lib=$build/libember.a
strip -g -o "$build/libember.stripped.a" "$lib"
lib_size=$(stat -c %s "$build/libember.stripped.a")
bad=$(nm -u "$lib" | grep -oE '\b(pthread_[a-z_]+|dlopen|vk[A-Z][A-Za-z]+|cblas_[a-z]+|dnnl_[a-z_]+)\b' | sort -u || true)
if [ -n "$bad" ]; then echo "libember.a needs more than libc and libm: $bad"; exit 1; fi
echo "libember.a: $lib_size bytes without debug info (budget $lib_budget); needs only libc and libm"
[ "$lib_size" -le "$lib_budget" ] || { echo "over budget"; exit 1; }
if [ -n "$model" ]; then
    exe=$build/examples/ember-embedded
    strip -o "$build/ember-embedded.stripped" "$exe"
    img=$(stat -c %s "$model")
    exe_size=$(( $(stat -c %s "$build/ember-embedded.stripped") - img ))
    echo "ember-embedded (static, stripped): $exe_size bytes plus the $img-byte model (budget $exe_budget)"
    [ "$exe_size" -le "$exe_budget" ] || { echo "over budget"; exit 1; }
    "$exe" "Once upon a time" 16
fi
