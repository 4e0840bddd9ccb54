#!/usr/bin/env bash
# Builds refeng-runc as it is meant to be installed: a static, non-PIE x86_64-unknown-linux-musl
# executable, profile `runtime` (Cargo.toml), with dlmalloc as its allocator. Prints its path:
#   target/x86_64-unknown-linux-musl/runtime/refeng-runc
# benches/side_by_side.sh and benches/lifecycle.rs time this build. With program names as
# arguments it builds those the same way instead (.ci/install builds the daemons and the CLI so:
# an idle daemon's memory is mostly its own text, which opt-level s and fat LTO make smaller).
#
# Why (each measured in benches/README.md): a dynamically linked PIE spends its start in the
# loader (relocations, symbol lookup in libc, libgcc_s, libseccomp), and refeng-runc starts
# twice per create/run/exec (the re-execution from the sealed copy); static and non-PIE, there
# is nothing to relocate. musl rather than static glibc: static glibc drags in NSS, iconv and
# every string-function variant, a bigger file to copy into the sealed memfd on every start.
# musl's malloc is slow for the many small allocations of parsing a config, hence dlmalloc.
#
# Needs the Rust target x86_64-unknown-linux-musl (added with rustup when missing; .ci/setup
# adds it), musl-tools (musl-gcc, for the C in the dependencies) and libseccomp-dev (its static
# libseccomp.a is linked in).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target=x86_64-unknown-linux-musl
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target" >&2 ||
    { echo "build_runtime: needs the Rust target $target (rustup target add $target)" >&2; exit 1; }
fi
command -v musl-gcc >/dev/null ||
  { echo "build_runtime: needs musl-gcc (apt-get install musl-tools; .ci/setup installs it)" >&2; exit 1; }
# libseccomp from a directory holding only libseccomp.a, so that the linker does not find
# glibc's libc.a beside it (the same directory as benches/shim_rss.sh: one build of the crate).
seccomp_dir="$repo/target/$target/libseccomp-static"
mkdir -p "$seccomp_dir"
ln -sf /usr/lib/x86_64-linux-gnu/libseccomp.a "$seccomp_dir/"
# Debian's libseccomp.a is built with _FORTIFY_SOURCE against glibc and calls glibc's
# __fprintf_chk (its only glibc-only symbol, in seccomp_export_pfc); musl has none, so a
# forwarder to vfprintf is linked in (the flag only asks for extra checks).
fortify="$repo/target/$target/fortify_fprintf.o"
if [[ ! -f "$fortify" ]]; then
  musl-gcc -O2 -x c -c -o "$fortify" - <<'C'
#include <stdarg.h>
#include <stdio.h>
int __fprintf_chk(FILE *f, int flag, const char *fmt, ...) {
  va_list ap;
  int n;
  (void)flag;
  va_start(ap, fmt);
  n = vfprintf(f, fmt, ap);
  va_end(ap);
  return n;
}
C
fi
bins=("$@")
[[ ${#bins[@]} -gt 0 ]] || bins=(refeng-runc)
args=()
for b in "${bins[@]}"; do args+=(--bin "$b"); done
CC_x86_64_unknown_linux_musl=musl-gcc \
  LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH="$seccomp_dir" \
  RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static -C link-arg=$fortify" \
  cargo build --manifest-path "$repo/Cargo.toml" --profile runtime --target "$target" \
  "${args[@]}" >&2
for b in "${bins[@]}"; do echo "$repo/target/$target/runtime/$b"; done
