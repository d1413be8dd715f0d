#!/usr/bin/env bash
# Installs what the product itself needs at run time, from Debian packages: espeak-ng (the Mandarin voice
# warnings of `serve` and `streetwatch speak`) and Mesa's EGL/OpenGL driver (llvmpipe; the OpenGL renderer of
# `streetwatch synth`). Idempotent. Without root it installs nothing and says what falls back: `synth`
# renders with its CPU painter, and voice warnings need pre-recorded audio (`--audio`, `warnings.audio`).
set -euo pipefail
have_egl() { ldconfig -p | grep -q libEGL_mesa; }
if have_egl && command -v espeak-ng >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-runtime: not root; espeak-ng / Mesa EGL not installed: synth falls back to its CPU renderer," \
    "voice warnings need pre-recorded audio" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null || true
apt-get install -y -q --no-install-recommends espeak-ng libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null
