#!/bin/sh
# Installs docker-compose from Debian's packages (used only to validate docker-compose.yml).
set -e
if command -v docker-compose >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "docker-compose is missing: install it (sudo apt-get install docker-compose) and retry." >&2
  exit 1
fi
echo "Installing docker-compose from Debian's packages ..." >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
