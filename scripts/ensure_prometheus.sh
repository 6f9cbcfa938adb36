#!/usr/bin/env bash
# Make sure `promtool` is on PATH (tests/integration/test_deploy_files.py runs it when present).
#
# Idempotent: does nothing but print the version when promtool exists. Otherwise installs Debian's
# `prometheus` package (it ships /usr/bin/promtool) with apt-get, without starting or enabling the
# Prometheus system service: a policy-rc.d that denies service starts is put in place for the
# install (unless one exists already), and afterwards the service is stopped and disabled in case it
# started anyway. Needs root, or passwordless sudo.
set -euo pipefail

if command -v promtool > /dev/null 2>&1; then
    promtool --version 2>&1 | head -n 1
    exit 0
fi

if ! command -v apt-get > /dev/null 2>&1; then
    echo "ensure_prometheus: promtool is missing and apt-get is not available; install Prometheus' promtool by hand" >&2
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo > /dev/null 2>&1 && sudo -n true 2> /dev/null; then
        SUDO=(sudo -n)
    else
        echo "ensure_prometheus: need root (or passwordless sudo) to apt-get install prometheus" >&2
        exit 1
    fi
fi
run() { "${SUDO[@]}" "$@"; }

POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=0
cleanup() {
    if [ "$ADDED_POLICY" -eq 1 ]; then
        run rm -f "$POLICY"
    fi
}
trap cleanup EXIT
if [ ! -e "$POLICY" ]; then
    # exit 101 = "action forbidden": invoke-rc.d / deb-systemd-invoke then start no service.
    printf '#!/bin/sh\nexit 101\n' | run tee "$POLICY" > /dev/null
    run chmod 755 "$POLICY"
    ADDED_POLICY=1
fi

export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)
run env DEBIAN_FRONTEND=noninteractive apt-get update -q
run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold prometheus
echo "ensure_prometheus: apt-get took $(($(date +%s) - start)) s"

# The package enables (and on a booted system may start) prometheus.service: undo both.
if [ -d /run/systemd/system ]; then
    run systemctl disable --now prometheus.service > /dev/null 2>&1 || true
else
    if [ -x /etc/init.d/prometheus ] && run /etc/init.d/prometheus status > /dev/null 2>&1; then
        run /etc/init.d/prometheus stop || true
    fi
    if command -v systemctl > /dev/null 2>&1; then
        run systemctl disable prometheus.service > /dev/null 2>&1 || true  # works offline too
    fi
fi

command -v promtool > /dev/null 2>&1 || {
    echo "ensure_prometheus: promtool still missing after installing the prometheus package" >&2
    exit 1
}
promtool --version 2>&1 | head -n 1
