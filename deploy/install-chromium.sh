#!/bin/sh
# Installs Chromium from Debian's packages (the browser tests drive it with Playwright; no
# browser download of Playwright's own).
set -e
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium is missing: install it (sudo apt-get install chromium) and retry." >&2
  exit 1
fi
echo "Installing chromium from Debian's packages ..." >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# apt's chatter (debconf notes included) is shown only when it fails.
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
       apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
