#!/usr/bin/env bash
# Install Debian's Rust cross toolchains so the project can be built and tested for
# aarch64-unknown-linux-gnu (little-endian), s390x-unknown-linux-gnu (big-endian) and
# armv7-unknown-linux-gnueabihf (32-bit) under user-mode QEMU, on a Debian 12 (bookworm) x86_64 machine, as root.
#
# Recipe (see shared/docs/cross-isa.md):
#   - Debian's "rustc-web" 1.85 toolchain (/usr/bin/rustc, /usr/bin/cargo) ships the
#     standard library for other architectures through multiarch; rustup's toolchain
#     stays the default on PATH and is not touched.
#   - arm64 and armhf std are apt-installed (libstd-rust-web-dev:arm64, :armhf).
#   - s390x std cannot be apt-installed (its dependency chain wants liblzma5:s390x at the
#     amd64 security-update version, which the s390x archive lacks): it is downloaded
#     with `apt-get download` and unpacked by hand into /usr/lib.
#   - All rustc-web/cargo-web/libstd pins are kept at one version.
#   - libc6-dev-{arm64,s390x}-cross are named explicitly: gcc-*-linux-gnu only recommends
#     them, and without them linking fails (cannot find Scrt1.o / crti.o).
#
# Idempotent: every step checks whether it is already done; a second run only checks
# (no apt-get update, no downloads) and re-runs a quick smoke test.
#
# Environment knobs:
#   CROSS_RUST_V=<version>    use exactly this Debian version for all rustc-web pins
#   CROSS_SETUP_APT_UPDATE=1  run `apt-get update` even if nothing seems missing
#   CROSS_SETUP_SKIP_VERIFY=1 skip the final compile-and-run-under-qemu smoke test
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# Version the recipe was measured with. A newer ~deb12uN build of the same 1.85 series is
# taken if the archive serves it for amd64, arm64 AND s390x (all pins move together);
# apt's plain candidate is NOT used: bookworm-security carries rustc-web 1.96 for
# amd64/arm64 only, which would leave s390x without a matching std.
DOC_V="1.85.0+dfsg3-1~deb12u3"
FOREIGN_ARCHES=(arm64 armhf s390x)
S390X_TRIPLE=s390x-unknown-linux-gnu
SERIES=1.85                      # rustc series whose std Debian ships for s390x too
LIBSTD="libstd-rust-web-$SERIES"
RUSTLIB=/usr/lib/rustlib

log() { printf '[cross-setup] %s\n' "$*"; }
run() { printf '[cross-setup] + %s\n' "$*"; "$@"; }
die() { printf '[cross-setup] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (apt-get/dpkg)"
command -v apt-get >/dev/null || die "apt-get not found: this script is for Debian 12"
NATIVE=$(dpkg --print-architecture)
[[ $NATIVE == amd64 ]] || die "expected an amd64 host, got $NATIVE"
if [[ -r /etc/debian_version && $(cut -d. -f1 /etc/debian_version) != 12 ]]; then
    log "warning: /etc/debian_version is $(cat /etc/debian_version), recipe is for Debian 12"
fi

SCRATCH=$(mktemp -d /tmp/cross-setup.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT

# "installed version" of pkg[:arch], empty if not (fully) installed.
installed_version() {
    dpkg-query -W -f='${db:Status-Abbrev}|${Version}\n' "$1" 2>/dev/null \
        | awk -F'|' '$1 ~ /^ii/ {print $2; exit}' || true
}
# all versions of pkg[:arch] that apt knows (one a line).
apt_versions() {
    apt-cache madison "$1" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}' || true
}

APT_UPDATED=0
apt_update() {
    [[ $APT_UPDATED == 1 ]] && return 0
    # Non-Debian sources that are unreachable here only produce warnings; apt-get update
    # still exits 0 unless something is badly wrong, which we do want to see.
    run apt-get update
    APT_UPDATED=1
}

# ---------------------------------------------------------------------------------------
# 1. foreign architectures
# ---------------------------------------------------------------------------------------
for a in "${FOREIGN_ARCHES[@]}"; do
    if dpkg --print-foreign-architectures | grep -x "$a" >/dev/null; then
        log "architecture $a: already enabled"
    else
        run dpkg --add-architecture "$a"
        APT_NEEDS_UPDATE=1
    fi
done
if [[ ${CROSS_SETUP_APT_UPDATE:-0} == 1 || ${APT_NEEDS_UPDATE:-0} == 1 ]]; then
    apt_update
fi

# ---------------------------------------------------------------------------------------
# 2. choose the toolchain version V (one version for every rustc-web pin)
# ---------------------------------------------------------------------------------------
if [[ -n ${CROSS_RUST_V:-} ]]; then
    V=$CROSS_RUST_V
    log "toolchain version: $V (from CROSS_RUST_V)"
elif V=$(installed_version "rustc-web:$NATIVE") && [[ $V == "$SERIES".0+dfsg*~deb12u* ]]; then
    log "toolchain version: $V (rustc-web already installed; keeping it)"
else
    apt_update
    log "apt-cache policy rustc-web:"
    apt-cache policy "rustc-web:$NATIVE" | sed 's/^/[cross-setup]   /'
    # The newest Debian 12 build of the $SERIES series that exists for EVERY package we pin,
    # on every architecture (amd64, arm64, s390x). Do not just take apt's candidate: a
    # newer rustc-web series may sit in bookworm-security for amd64/arm64 only (seen:
    # 1.96.0+dfsg1-1~deb12u2), and the s390x std must be built by the very same rustc.
    V=""
    for cand in $(apt_versions "rustc-web:$NATIVE" | grep -E "^${SERIES//./\\.}\\.0\\+dfsg.*~deb12u" | sort -rV); do
        ok=1
        for p in "cargo-web:$NATIVE" "libstd-rust-web-dev:$NATIVE" "$LIBSTD:$NATIVE" \
                 "libstd-rust-web-dev:arm64" "$LIBSTD:arm64" \
                 "libstd-rust-web-dev:armhf" "$LIBSTD:armhf" \
                 "libstd-rust-web-dev:s390x" "$LIBSTD:s390x"; do
            if ! apt_versions "$p" | grep -xF "$cand" >/dev/null; then
                log "version $cand: $p not available in it; skipping"
                ok=0
                break
            fi
        done
        if [[ $ok == 1 ]]; then V=$cand; break; fi
    done
    [[ -n $V ]] || die "no rustc-web $SERIES build (~deb12u) available for amd64+arm64+s390x; recipe expects $DOC_V"
    log "toolchain version: $V (newest $SERIES build available on all three architectures)"
    if [[ $V != "$DOC_V" ]]; then
        log "note: $V differs from the measured $DOC_V; pinning every package to $V"
    fi
fi
SERIES=$(cut -d. -f1,2 <<<"${V%%+*}")   # e.g. 1.85 -> libstd-rust-web-1.85
LIBSTD="libstd-rust-web-$SERIES"

# ---------------------------------------------------------------------------------------
# 3. apt packages: toolchain (pinned to V), cross linkers, qemu, s390x runtime libs
# ---------------------------------------------------------------------------------------
# name:arch=version-or-empty (empty = any version)
WANT=(
    "rustc-web:$NATIVE=$V"
    "cargo-web:$NATIVE=$V"
    "libstd-rust-web-dev:$NATIVE=$V"
    "$LIBSTD:$NATIVE=$V"
    "libstd-rust-web-dev:arm64=$V"
    "$LIBSTD:arm64=$V"
    "libstd-rust-web-dev:armhf=$V"   # armv7-unknown-linux-gnueabihf: the 32-bit host
    "$LIBSTD:armhf=$V"
    "gcc-aarch64-linux-gnu:$NATIVE="
    "gcc-arm-linux-gnueabihf:$NATIVE="
    "gcc-s390x-linux-gnu:$NATIVE="
    "libc6-dev-arm64-cross:all="    # crt1.o/crti.o for the linkers: only *recommended*
    "libc6-dev-s390x-cross:all="    # by gcc-*-linux-gnu, so name them (no-install-recommends)
    "libc6-dev-armhf-cross:all="
    "qemu-user:$NATIVE="
    "libc6:s390x="
    "libgcc-s1:s390x="
    "libc6:armhf="
    "libgcc-s1:armhf="
)
TO_INSTALL=()
for w in "${WANT[@]}"; do
    pkg=${w%%=*} want=${w#*=}
    have=$(installed_version "$pkg")
    if [[ -n $have && ( -z $want || $have == "$want" ) ]]; then
        log "package $pkg: installed ($have)"
    else
        if [[ -n $have ]]; then
            log "package $pkg: installed $have, want $want"
        else
            log "package $pkg: missing"
        fi
        if [[ -n $want ]]; then TO_INSTALL+=("$pkg=$want"); else TO_INSTALL+=("$pkg"); fi
    fi
done
if ((${#TO_INSTALL[@]})); then
    apt_update
    run apt-get install -y --no-install-recommends --allow-downgrades "${TO_INSTALL[@]}"
else
    log "all apt packages present; skipping apt-get install"
fi
for tool in /usr/bin/rustc /usr/bin/cargo /usr/bin/rustdoc aarch64-linux-gnu-gcc \
            s390x-linux-gnu-gcc arm-linux-gnueabihf-gcc qemu-aarch64 qemu-s390x qemu-arm; do
    command -v "$tool" >/dev/null || die "$tool not found after install"
done

# ---------------------------------------------------------------------------------------
# 4. s390x standard library, unpacked by hand (not installable through apt)
# ---------------------------------------------------------------------------------------
# "Done" means: rustc 1.85 can load a std for s390x (i.e. present AND built by this exact
# rustc; a std left over from an older rustc-web would fail with E0514).
s390x_std_ok() {
    [[ -d $RUSTLIB/$S390X_TRIPLE/lib ]] || return 1
    echo 'pub fn f() -> String { String::from("x") }' >"$SCRATCH/probe.rs"
    /usr/bin/rustc --target "$S390X_TRIPLE" --crate-type rlib --emit metadata \
        -o "$SCRATCH/probe.rmeta" "$SCRATCH/probe.rs" >/dev/null 2>&1
}
if s390x_std_ok; then
    log "s390x std: $RUSTLIB/$S390X_TRIPLE present and usable by /usr/bin/rustc"
else
    log "s390x std: missing or not matching rustc $V; unpacking it by hand"
    apt_update
    dl="$SCRATCH/debs"
    mkdir -p "$dl"
    # apt drops to the _apt user for downloads; let it write here (avoids a sandbox warning)
    if id _apt >/dev/null 2>&1; then chmod 755 "$SCRATCH"; chown _apt "$dl"; fi
    (cd "$dl" && run apt-get download "libstd-rust-web-dev:s390x=$V" "$LIBSTD:s390x=$V")
    root="$SCRATCH/root"
    mkdir -p "$root"
    for deb in "$dl"/*.deb; do
        run dpkg -x "$deb" "$root"
    done
    [[ -d $root/usr/lib/rustlib/$S390X_TRIPLE ]] || die "unpacked debs lack usr/lib/rustlib/$S390X_TRIPLE"
    if [[ -d $RUSTLIB/$S390X_TRIPLE ]]; then
        run rm -rf "${RUSTLIB:?}/$S390X_TRIPLE"   # stale (other rustc version)
    fi
    mkdir -p "$RUSTLIB" /usr/lib/s390x-linux-gnu
    run cp -a "$root/usr/lib/rustlib/$S390X_TRIPLE" "$RUSTLIB/"
    if [[ -d $root/usr/lib/s390x-linux-gnu ]]; then
        run cp -a "$root/usr/lib/s390x-linux-gnu/." /usr/lib/s390x-linux-gnu/
    fi
    s390x_std_ok || die "s390x std installed but /usr/bin/rustc still cannot use it"
    log "s390x std: installed"
fi

# ---------------------------------------------------------------------------------------
# 5. smoke test: build a threaded hello for each target, run it under qemu (no -L!)
# ---------------------------------------------------------------------------------------
if [[ ${CROSS_SETUP_SKIP_VERIFY:-0} == 1 ]]; then
    log "skipping smoke test (CROSS_SETUP_SKIP_VERIFY=1)"
else
    # qemu must use the multiarch loader/libs; a -L/QEMU_LD_PREFIX pointing at the cross
    # sysroot makes pthread_create spin forever (glibc mismatch).
    unset QEMU_LD_PREFIX
    cat >"$SCRATCH/hello.rs" <<'EOF'
fn main() {
    let h = std::thread::spawn(|| 0x0102_0304u32.to_ne_bytes());
    let b = h.join().unwrap();
    let endian = if cfg!(target_endian = "big") { "big" } else { "little" };
    println!("{} {} {:02x?}", std::env::consts::ARCH, endian, b);
}
EOF
    for spec in "aarch64-unknown-linux-gnu aarch64-linux-gnu-gcc qemu-aarch64 aarch64 little" \
                "armv7-unknown-linux-gnueabihf arm-linux-gnueabihf-gcc qemu-arm arm little" \
                "s390x-unknown-linux-gnu s390x-linux-gnu-gcc qemu-s390x s390x big"; do
        read -r triple linker qemu arch endian <<<"$spec"
        /usr/bin/rustc --edition 2021 --target "$triple" -C linker="$linker" \
            -o "$SCRATCH/hello-$arch" "$SCRATCH/hello.rs"
        out=$(timeout 60 "$qemu" "$SCRATCH/hello-$arch")
        log "smoke $triple: $out"
        [[ $out == "$arch $endian "* ]] || die "unexpected output from $qemu: $out"
    done
fi

log "done: use scripts/cross-test.sh <aarch64-unknown-linux-gnu|armv7-unknown-linux-gnueabihf|s390x-unknown-linux-gnu> [cargo test args...]"
