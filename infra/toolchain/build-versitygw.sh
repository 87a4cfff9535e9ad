#!/usr/bin/env bash
# Build the Versity S3 gateway from its Go module, cached outside the repository by version; skip when that version
# is already built. It serves S3 from a POSIX directory and implements versioning and Object Lock in compliance
# mode (a locked version cannot be deleted nor its retention shortened, by anyone): the evidence store's tests run
# against it (cli/tradestack/evidence/s3store.py). Chosen over SeaweedFS (whose Object Lock enforces the same) for
# its size: 81 modules to build against SeaweedFS's 494.
set -euo pipefail
version="${VERSITYGW_VERSION:-1.8.0}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tradestack/versitygw/v${version}"
bin="$cache/bin/versitygw"

if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "${version}"; then
  exit 0
fi
command -v go >/dev/null || { echo "build-versitygw: Go is required (https://go.dev)" >&2; exit 3; }
mkdir -p "$cache/bin"
echo "building versitygw v${version} from its Go module (once per version)"
staging="$(mktemp -d "$cache/.bin-XXXXXX")"
trap 'rm -rf "$staging"' EXIT
GOFLAGS=-mod=mod GOBIN="$staging" go install \
  -ldflags "-X main.Version=v${version}" "github.com/versity/versitygw/cmd/versitygw@v${version}"
mv -f "$staging/versitygw" "$bin"
