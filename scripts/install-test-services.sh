#!/usr/bin/env bash
# Installs what the tests' real services need, from Debian packages: GStreamer's RTSP server
# (scripts/rtsp_server.py, run by the system python3 with python3-gi) and a PostgreSQL server
# (the tests start their own throw-away cluster on 127.0.0.1), and espeak-ng for the Mandarin voice
# warnings, Mesa's EGL/OpenGL driver (llvmpipe) for the synthetic-scene renderer, and Chromium for the
# dashboard's browser tests (driven by Playwright; no browser download), a CJK font (the synthetic number
# plates, Chinese text in the browser tests), and the Kannel SMS gateway with its
# fake SMSC (scripts/install-kannel.sh; the tests start their own on 127.0.0.1). Idempotent; needs root.
set -euo pipefail
bash "$(dirname "$0")/install-kannel.sh"
have_pg() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
have_egl() { ldconfig -p | grep -q libEGL_mesa; }
have_cjk() { [ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; }
if have_pg && have_egl && have_cjk && command -v chromium >/dev/null && command -v espeak-ng >/dev/null && /usr/bin/python3 - <<'PY' 2>/dev/null
import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
assert all(Gst.ElementFactory.find(n) for n in ("qtdemux", "h264parse", "rtph264pay"))
PY
then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-test-services: not root; the RTSP tests will be skipped (CI installs them)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null || true
apt-get install -y -q --no-install-recommends python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp \
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad postgresql espeak-ng \
  libegl1 libegl-mesa0 libgl1-mesa-dri chromium fonts-wqy-microhei >/dev/null
