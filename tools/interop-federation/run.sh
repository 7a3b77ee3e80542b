#!/bin/sh
# Federation interop tier: our node against Prosody and ejabberd (Debian packages), each in a
# network namespace the test creates, with dnsmasq serving the SRV and A records and slixmpp
# clients on both sides. Needs root (ip netns). Installs what is missing, then runs
# firmware/federation/tests/interop.rs. Bounded: every wait in the test and the clients has
# a timeout; the whole run takes about a minute once built. `run.sh --bench` runs the s2s
# benchmarks against Prosody instead: XEP-0199 ping round trips, then loadgen's message pairs
# across the link (100 pairs at 1600 msg/s; SB_S2S_PAIRS, SB_S2S_RATE, SB_S2S_SECS override).
set -eu
cd "$(dirname "$0")/../.."

missing=""
command -v prosody >/dev/null 2>&1 || missing="$missing prosody"
command -v ejabberdctl >/dev/null 2>&1 || missing="$missing ejabberd"
command -v dnsmasq >/dev/null 2>&1 || missing="$missing dnsmasq-base"
/usr/bin/python3 -c 'import slixmpp' >/dev/null 2>&1 || missing="$missing python3-slixmpp"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
if [ -n "$missing" ]; then
    echo "installing:$missing"
    apt-get update -qq
    # The packages' own services are not wanted: the test starts its own instances.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq $missing
fi
if [ "$(id -u)" != 0 ]; then
    echo "the federation interop tests need root (ip netns)" >&2
    exit 1
fi

if [ "${1:-}" = "--bench" ]; then
    shift
    # s2s figures with Prosody for the issue note; release builds. The message bench runs the
    # loadgen binary of the same profile, next to the test binary. One test at a time: they
    # would compete for the cores.
    cargo build --release -p loadgen
    cargo test --release -p sb-federation --test interop --no-run
    exec timeout 600 cargo test --release -p sb-federation --test interop prosody_s2s_bench -- \
        --ignored --nocapture --test-threads=1 "$@"
fi
# Build outside the time bound; the bound is for the run.
cargo test -p sb-federation --test interop --no-run
exec timeout 300 cargo test -p sb-federation --test interop -- --ignored --test-threads=1 \
    --skip prosody_s2s_bench "$@"
