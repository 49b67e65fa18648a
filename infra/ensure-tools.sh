#!/usr/bin/env bash
# Installs what the tests need beyond Python, Java and Maven when it is missing;
# `make test` runs it before anything else.
#
# Why: without it a new user's `make test` ran 800 tests and then failed the
# dashboard test for want of a browser. Now a missing tool is installed from
# Debian with apt-get (as root, or through `sudo -n`), or the run stops at once
# with one line naming the packages to install.
set -euo pipefail

# One line per tool: the command the tests run, then the Debian package that has it.
TOOLS=(
  "chromium chromium"   # tests/services/operations/test_dashboard.py renders the dashboard headless
  "promtool prometheus" # tests/services/operations/test_monitoring.py checks and unit-tests infra/prometheus/alerts.yml
)

missing=()
packages=()
for tool in "${TOOLS[@]}"; do
  read -r command package <<<"$tool"
  if ! command -v "$command" >/dev/null 2>&1; then
    missing+=("$command")
    packages+=("$package")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

stop() {
  echo "error: the tests need ${missing[*]}: $1" >&2
  exit 1
}

if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  as_root=(sudo -n)
else
  stop "run 'apt-get install -y ${packages[*]}' as root, then make test again"
fi
command -v apt-get >/dev/null 2>&1 ||
  stop "no apt-get here; install the Debian packages ${packages[*]} (or your system's), then make test again"

echo "ensure-tools: installing ${packages[*]} with apt-get (the tests need ${missing[*]})"
{
  "${as_root[@]}" apt-get update -qq &&
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${packages[@]}"
} || stop "apt-get could not install ${packages[*]} (its messages are above)"

for command in "${missing[@]}"; do
  command -v "$command" >/dev/null 2>&1 ||
    stop "apt-get installed ${packages[*]} but $command is still not on PATH"
done
