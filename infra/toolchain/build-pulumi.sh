#!/usr/bin/env bash
# Build the Pulumi CLI from Go modules at exactly the version of the installed `pulumi` Python SDK,
# into a cache outside the repository; skip when that version is already built, or when the user
# already has a matching `pulumi` on PATH.
#
# pkg/v3's go.mod uses `replace` directives, so `go install pkg@version` refuses; a small generated
# wrapper module requires it and repeats those replaces. The Python language host
# (sdk/python/cmd/pulumi-language-python) is not served by the module proxy here: the toolkit runs
# its programs inline through the Automation API, which needs no language host. Dynamic providers
# get their `pulumi-resource-pulumi-python` entry point from the toolkit at run time.
set -euo pipefail
python="${1:?usage: build-pulumi.sh PYTHON [VERSION]}"
# the version: given (make reads it from pyproject.toml, so the build need not wait for the virtual environment),
# else the `pulumi` SDK installed for PYTHON
version="${2:-$("$python" -c 'from importlib.metadata import version; print(version("pulumi"))')}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tradestack/pulumi/v${version}"
bin="$cache/bin/pulumi"

if [ -x "$bin" ] && [ "$("$bin" version 2>/dev/null)" = "v${version}" ]; then
  exit 0
fi
if command -v pulumi >/dev/null 2>&1 && [ "$(pulumi version 2>/dev/null)" = "v${version}" ]; then
  echo "using pulumi v${version} from PATH: $(command -v pulumi)"
  exit 0
fi
command -v go >/dev/null || { echo "build-pulumi: Go is required (https://go.dev)" >&2; exit 3; }

src="$cache/src"
mkdir -p "$src" "$cache/bin"
modroot="$(GOFLAGS=-mod=mod go mod download -json "github.com/pulumi/pulumi/pkg/v3@v${version}" \
           | "$python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
replaces="$(grep -E '^replace github.com/atotto' "$modroot/go.mod" || true)"
cat > "$src/go.mod" <<GOMOD
module tradestack.local/pulumi-build

go 1.24

require (
	github.com/pulumi/pulumi/pkg/v3 v${version}
	github.com/pulumi/pulumi/sdk/v3 v${version}
)

${replaces}
GOMOD
cat > "$src/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
GO
echo "building pulumi v${version} from Go modules into $cache (first time: a few minutes)"
cd "$src"
GOFLAGS=-mod=mod go mod tidy >/dev/null
go build -trimpath -o "$bin.tmp" \
  -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v${version}" \
  github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
mv "$bin.tmp" "$bin"
"$bin" version
