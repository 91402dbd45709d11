#!/usr/bin/env sh
# Installs what `npm start` / `npm test` need on a fresh machine, and nothing when it is there already:
# Bun (pinned) and the locked packages. Redis and the RocketMQ jars are installed by
# `bun scripts/stack.ts up` (apt-get for redis-server, Maven for the jars), which start and test run.
set -eu
cd "$(dirname "$0")/.."
BUN_VERSION=1.4.4
if [ "$(bun --version 2>/dev/null || true)" != "$BUN_VERSION" ]; then
  echo "setup: installing bun@${BUN_VERSION} with npm" >&2
  npm install -g --no-fund --no-audit "bun@${BUN_VERSION}" >&2
fi
bun install --frozen-lockfile >&2
