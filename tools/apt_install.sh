#!/bin/sh
# Install the Debian/Ubuntu packages named that are missing, as `make setup` and `make test` need
# them; quick (no apt call) when none is.
#
#   tools/apt_install.sh [--optional WHAT] PACKAGE...
#
# A package this system's archive does not have (Ubuntu has no `chromium` package: it ships the
# browser as a snap) stops the run naming it, or with --optional WHAT is left out with a line
# saying what goes without it; the packages the archive has are installed either way. SUDO
# (empty for root) prefixes the apt commands.
set -eu
optional=""
if [ "${1:-}" = "--optional" ]; then
    optional="$2"
    shift 2
fi
missing=""
for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -n "$missing" ] || exit 0
echo "installing Debian packages:$missing"
${SUDO:-} apt-get update -qq
have="" lacking=""
for p in $missing; do
    # a candidate version: the archive has it (apt-cache policy says "(none)" otherwise)
    if LC_ALL=C apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]'; then
        have="$have $p"
    else
        lacking="$lacking $p"
    fi
done
if [ -n "$have" ]; then
    DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq --no-install-recommends $have
fi
if [ -n "$lacking" ]; then
    if [ -n "$optional" ]; then
        echo "not in this system's package archive:$lacking; $optional" >&2
    else
        echo "error: not in this system's package archive:$lacking (enable its 'universe' or" \
             "'main' component, or install them another way), then run make again" >&2
        exit 1
    fi
fi
