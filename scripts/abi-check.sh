#!/usr/bin/env bash
# ABI check with libabigail (Debian: abigail-tools).
#
#   scripts/abi-check.sh            compare a fresh build with abi/libember.abi
#   scripts/abi-check.sh --update   rewrite the baseline (a deliberate break:
#                                   bump the major version and note it in CHANGELOG.md)
#   scripts/abi-check.sh --selftest prove the check fails: change a public struct
#                                   in a copy of the tree and expect a failure
#
# Policy (docs/bindings.md): new functions pass. Any change to an existing
# function or public type fails (abidiff reports layout changes as "ABI
# change", exit bit 4, and removals as incompatible, bit 8) unless the
# SONAME's major version differs from the baseline's. A reviewed change that
# keeps compatibility (a field carved out of a reserved tail) updates the
# baseline with --update in the same commit, noted in CHANGELOG.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
baseline="$root/abi/libember.abi"
suppr="$root/abi/suppressions.ini"

build_lib() { # $1 source tree, $2 build dir
    rm -rf "$2"
    meson setup "$2" "$1" -Dbuildtype=debugoptimized -Dtests=false >/dev/null
    ninja -C "$2" >/dev/null
}

dump() { # $1 source tree, $2 build dir
    abidw --no-corpus-path --suppressions "$suppr" --headers-dir "$1/include" \
        --headers-dir "$2/include" "$2/libember.so"
}

soname_major() { grep -o 'soname=.libember.so.[0-9]*' "$1" | grep -o '[0-9]*$'; }

check() { # $1 source tree, $2 build dir; returns abidiff's verdict under the policy
    build_lib "$1" "$2"
    dump "$1" "$2" > "$2/current.abi"
    set +e
    abidiff --no-added-syms --suppressions "$suppr" "$baseline" "$2/current.abi"
    local rc=$?
    set -e
    if (( rc & 1 || rc & 2 )); then echo "abidiff failed to run ($rc)"; return 2; fi
    if (( rc & 4 || rc & 8 )); then
        if [ "$(soname_major "$baseline")" != "$(soname_major "$2/current.abi")" ]; then
            echo "incompatible ABI change with a new major version: allowed (update the baseline)"
            return 0
        fi
        echo "ABI CHANGE without a major version bump (see the report above)"
        return 1
    fi
    echo "ABI compatible with abi/libember.abi"
    return 0
}

case "${1:-}" in
--update)
    build_lib "$root" "$root/build-abi"
    dump "$root" "$root/build-abi" > "$baseline"
    echo "wrote $baseline"
    ;;
--selftest)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    git -C "$root" ls-files -z | (cd "$root" && xargs -0 cp --parents -t "$tmp")
    # a field added at the front of a public struct moves every other field
    sed -i 's/typedef struct ember_batch_entry {/typedef struct ember_batch_entry {\n    int32_t abi_selftest_field;/' \
        "$tmp/include/ember.h"
    grep -q abi_selftest_field "$tmp/include/ember.h"
    if check "$tmp" "$tmp/build"; then
        echo "selftest FAILED: the changed struct was not caught"
        exit 1
    fi
    echo "selftest passed: the changed struct was caught"
    ;;
*)
    check "$root" "$root/build-abi"
    ;;
esac
