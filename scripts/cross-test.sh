#!/usr/bin/env bash
# Run `cargo test` for another ISA under user-mode QEMU, with Debian's Rust 1.85 toolchain.
#
#   scripts/cross-test.sh TARGET [cargo test args...]
#   CROSS_CARGO_SUBCOMMAND=build scripts/cross-test.sh TARGET [cargo build args...]
#
#   TARGET: aarch64-unknown-linux-gnu (little-endian) | s390x-unknown-linux-gnu (big-endian)
#           | armv7-unknown-linux-gnueabihf (32-bit, little-endian)
#   e.g.    scripts/cross-test.sh s390x-unknown-linux-gnu -p cosmic-tests --test image_golden
#
# Needs scripts/cross-setup.sh to have run (as root) once on the machine.
# Uses /usr/bin/cargo + /usr/bin/rustc (Debian's 1.85; rustup's newer cargo stays first on
# PATH and is NOT used here, since rustup cannot provide these targets). Builds into a
# separate target dir (default <workspace>/target/cross; override with CROSS_TARGET_DIR)
# so it does not thrash the main target dir, which holds artifacts of another rustc.
# Doctests are not run for cross targets by cargo 1.85.
# Exports CROSS_TEST_RUNNER=qemu-<arch> to the tests (see below).
set -euo pipefail

usage() {
    sed -n '2,8s/^# \{0,1\}//p' "$0" >&2
    exit 2
}
[[ $# -ge 1 ]] || usage
TARGET=$1
shift

case $TARGET in
    aarch64-unknown-linux-gnu) LINKER=aarch64-linux-gnu-gcc QEMU=qemu-aarch64 ;;
    armv7-unknown-linux-gnueabihf) LINKER=arm-linux-gnueabihf-gcc QEMU=qemu-arm ;;
    s390x-unknown-linux-gnu)   LINKER=s390x-linux-gnu-gcc   QEMU=qemu-s390x ;;
    -h|--help) usage ;;
    *) echo "cross-test: unsupported target '$TARGET'" >&2; usage ;;
esac

CARGO=/usr/bin/cargo
for tool in "$CARGO" /usr/bin/rustc /usr/bin/rustdoc "$LINKER" "$QEMU"; do
    command -v "$tool" >/dev/null \
        || { echo "cross-test: $tool not found; run scripts/cross-setup.sh (as root) first" >&2; exit 1; }
done
[[ -d /usr/lib/rustlib/$TARGET/lib ]] \
    || { echo "cross-test: no std for $TARGET in /usr/lib/rustlib; run scripts/cross-setup.sh" >&2; exit 1; }

# Debian's toolchain for everything cargo compiles (host build scripts/proc-macros too).
export RUSTC=/usr/bin/rustc
export RUSTDOC=/usr/bin/rustdoc
# Cargo env vars take the target triple upper-cased, '-' -> '_'.
T=$(tr 'a-z-' 'A-Z_' <<<"$TARGET")
export "CARGO_TARGET_${T}_LINKER=$LINKER"
# No -L / QEMU_LD_PREFIX: the cross sysroot's glibc (2.36-8cross1) does not match the
# multiarch loader and pthread_create then spins forever. qemu must use the multiarch
# loader + libs (libc6:arm64 / libc6:s390x) found at the normal paths.
export "CARGO_TARGET_${T}_RUNNER=$QEMU"
unset QEMU_LD_PREFIX
# There is no binfmt_misc here, so a test running under qemu cannot exec another binary of
# the same foreign target directly (the spawn fails, exit status 127). Tests that spawn
# such binaries (e.g. env!("CARGO_BIN_EXE_...")) must prefix them with this runner when it
# is set: Command::new($CROSS_TEST_RUNNER).arg(exe)...  Native builds leave it unset.
export CROSS_TEST_RUNNER=$QEMU

# Separate target dir, at the root of the workspace being tested (honours --manifest-path).
if [[ -n ${CROSS_TARGET_DIR:-} ]]; then
    export CARGO_TARGET_DIR=$CROSS_TARGET_DIR
else
    locate=(locate-project --workspace --message-format plain)
    prev=""
    for a in "$@"; do
        case $a in
            --manifest-path=*) locate+=("$a") ;;
        esac
        [[ $prev == --manifest-path ]] && locate+=(--manifest-path "$a")
        [[ $a == -- ]] && break
        prev=$a
    done
    ws_manifest=$("$CARGO" "${locate[@]}")
    export CARGO_TARGET_DIR="$(dirname "$ws_manifest")/target/cross"
fi

echo "cross-test: $("$CARGO" --version) / $(/usr/bin/rustc --version)" >&2
echo "cross-test: target=$TARGET linker=$LINKER runner=$QEMU CARGO_TARGET_DIR=$CARGO_TARGET_DIR" >&2
SUBCOMMAND=${CROSS_CARGO_SUBCOMMAND:-test}
echo "cross-test: + $CARGO $SUBCOMMAND --target $TARGET $*" >&2
exec "$CARGO" "$SUBCOMMAND" --target "$TARGET" "$@"
