#!/usr/bin/env bash
# Installs the Kannel SMS gateway from Debian packages for the SMS notifier's integration tests: kannel
# (bearerbox, smsbox) and kannel-extras (the fake SMSC, /usr/lib/kannel/test/fakesmsc). The tests start their
# own gateway on 127.0.0.1 (tests/helpers/kannel.py), so the system daemon (/etc/init.d/kannel) is kept from
# starting during the install, disabled, and stopped if it runs. Idempotent. Uses sudo when not root; without
# root or sudo it installs nothing and the Kannel tests are skipped (failed in CI).
set -euo pipefail
have_kannel() { [ -x /usr/sbin/bearerbox ] && [ -x /usr/sbin/smsbox ] && [ -x /usr/lib/kannel/test/fakesmsc ]; }
SUDO=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    have_kannel && exit 0
    echo "install-kannel: not root and no sudo; Kannel not installed: the SMS gateway tests will be skipped" >&2
    exit 0
  fi
fi
quiet_system_daemon() {
  # Never leave the packaged daemon running or starting at boot: it would hold ports 13000/13001/13013.
  if [ -x /etc/init.d/kannel ]; then
    "${SUDO[@]}" /etc/init.d/kannel stop >/dev/null 2>&1 || true
    "${SUDO[@]}" update-rc.d kannel disable >/dev/null 2>&1 || true
  fi
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    "${SUDO[@]}" systemctl disable --now kannel >/dev/null 2>&1 || true
  fi
}
if have_kannel; then
  quiet_system_daemon
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Keep the packages' maintainer scripts from starting the daemon (invoke-rc.d honours policy-rc.d's 101).
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  ADDED_POLICY=1
fi
cleanup() { if [ "$ADDED_POLICY" = 1 ]; then "${SUDO[@]}" rm -f "$POLICY"; fi; }
trap cleanup EXIT
"${SUDO[@]}" apt-get update -q >/dev/null || true
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends kannel kannel-extras \
  >/dev/null
quiet_system_daemon
