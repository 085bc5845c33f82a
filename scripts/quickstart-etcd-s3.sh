#!/usr/bin/env bash
# The quickstart on an etcd coordinator and S3 checkpoints: starts etcd (Debian's etcd-server)
# and s3s-fs (cargo install s3s-fs --version '~0.14' --locked --features binary) on loopback
# in a fresh folder, runs `cargo run --release --example quickstart --features etcd,s3 -- --etcd
# URL --s3` against them, and stops both. The binaries are found on PATH, or through
# COSMIC_ETCD_BIN and COSMIC_S3S_FS. Credentials reach the quickstart in environment
# variables, never on its command line.
set -euo pipefail
cd "$(dirname "$0")/.."

etcd_bin="${COSMIC_ETCD_BIN:-$(command -v etcd || echo /usr/bin/etcd)}"
s3s_bin="${COSMIC_S3S_FS:-$(command -v s3s-fs || true)}"
[ -x "$etcd_bin" ] || { echo "etcd not found: apt-get install etcd-server (or set COSMIC_ETCD_BIN)" >&2; exit 1; }
[ -n "$s3s_bin" ] && [ -x "$s3s_bin" ] || { echo "s3s-fs not found: cargo install s3s-fs --version '~0.14' --locked --features binary (or set COSMIC_S3S_FS)" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/cosmic-quickstart.XXXXXX")"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# etcd on two ports picked at random among the unprivileged ones, retried if taken.
for attempt in 1 2 3 4 5; do
    client=$((20000 + RANDOM % 20000))
    peer=$((client + 1))
    "$etcd_bin" --name quickstart --data-dir "$work/etcd-$attempt" \
        --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "quickstart=http://127.0.0.1:$peer" --log-level error \
        >"$work/etcd.log" 2>&1 &
    etcd_pid=$!
    up=""
    for _ in $(seq 100); do
        if ! kill -0 "$etcd_pid" 2>/dev/null; then break; fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$client") 2>/dev/null; then up=1; break; fi
        sleep 0.1
    done
    if [ -n "$up" ]; then pids+=("$etcd_pid"); break; fi
    kill "$etcd_pid" 2>/dev/null || true
done
[ -n "${up:-}" ] || { echo "etcd did not start; its log:" >&2; cat "$work/etcd.log" >&2; exit 1; }

# s3s-fs picks its own port (0) and logs it; the bucket is a folder of its root.
mkdir -p "$work/s3/quickstart"
export COSMIC_S3_ACCESS_KEY_ID="quickstart-$$"
COSMIC_S3_SECRET_ACCESS_KEY="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export COSMIC_S3_SECRET_ACCESS_KEY
# s3s-fs takes its keys as arguments: a throwaway server of this script's, on loopback.
RUST_LOG=s3s_fs=info NO_COLOR=1 "$s3s_bin" --host 127.0.0.1 --port 0 --access-key "$COSMIC_S3_ACCESS_KEY_ID" \
    --secret-key "$COSMIC_S3_SECRET_ACCESS_KEY" "$work/s3" >"$work/s3.log" 2>&1 &
pids+=($!)
s3_addr=""
for _ in $(seq 100); do
    s3_addr="$(sed -n 's/.*server is running at http:\/\/\([0-9.:]*\).*/\1/p' "$work/s3.log" | head -1)"
    [ -n "$s3_addr" ] && break
    sleep 0.1
done
[ -n "$s3_addr" ] || { echo "s3s-fs did not start; its log:" >&2; cat "$work/s3.log" >&2; exit 1; }
export COSMIC_S3_ENDPOINT="http://$s3_addr" COSMIC_S3_BUCKET=quickstart COSMIC_S3_REGION=us-east-1

echo "etcd at http://127.0.0.1:$client, S3 (s3s-fs) at http://$s3_addr"
cargo run --release --example quickstart --features etcd,s3 -- \
    --dir "$work/quickstart" --etcd "http://127.0.0.1:$client" --s3
