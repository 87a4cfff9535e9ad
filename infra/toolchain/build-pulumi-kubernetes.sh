#!/usr/bin/env bash
# Build Pulumi's Kubernetes resource provider (pulumi-resource-kubernetes) from its Go module, at the version of
# the installed `pulumi-kubernetes` Python SDK, into a cache outside the repository; skip when already built.
#
# The module proxy here serves provider/v4 only as the pseudo-version of the commit that became the SDK's
# release (PROVIDER_COMMIT below, released as v4.25.0 the next day), so the SDK is pinned to that release in
# pyproject.toml. The provider embeds JSON files that upstream's `go generate` writes from files in the module
# (the schema with its version set, and the Terraform mapping compacted): done here in Python, on a writable copy.
set -euo pipefail
python="${1:?usage: build-pulumi-kubernetes.sh PYTHON}"
python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")"  # the build cd-s away
version="$("$python" -c 'from importlib.metadata import version; print(version("pulumi-kubernetes"))')"
declare -A PROVIDER_COMMIT=([4.25.0]="v4.0.0-20260115033456-f47bc2d6f199")
module="${PROVIDER_COMMIT[$version]:-}"
[ -n "$module" ] || { echo "build-pulumi-kubernetes: no provider module known for pulumi-kubernetes $version" >&2; exit 3; }
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tradestack/pulumi-kubernetes/v${version}"
bin="$cache/bin/pulumi-resource-kubernetes"

if [ -x "$bin" ] && [ -f "$cache/bin/.version" ] && [ "$(cat "$cache/bin/.version")" = "$version" ]; then
  exit 0
fi
command -v go >/dev/null || { echo "build-pulumi-kubernetes: Go is required (https://go.dev)" >&2; exit 3; }

modroot="$(GOFLAGS=-mod=mod go mod download -json "github.com/pulumi/pulumi-kubernetes/provider/v4@${module}" \
           | "$python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
src="$cache/src"
rm -rf "$src"
mkdir -p "$cache/bin"
cp -r "$modroot" "$src"
chmod -R u+w "$src"
cd "$src"
# upstream builds inside its repository, where ../sdk is the SDK; outside it, the SDK module it requires
sed -i '/^replace github.com\/pulumi\/pulumi-kubernetes\/sdk\/v4 => /d' go.mod
"$python" - "$version" <<'PY'
import json, sys
from pathlib import Path
here = Path("cmd/pulumi-resource-kubernetes")
schema = json.loads((here / "schema.json").read_text())
schema["version"] = sys.argv[1]
(here / "schema-embed.json").write_text(json.dumps(schema, separators=(",", ":")))
mapping = json.loads((here / "terraform-mapping.json").read_text())
(here / "terraform-mapping-embed.json").write_text(json.dumps(mapping, separators=(",", ":")))
PY
echo "building pulumi-resource-kubernetes v${version} from Go modules into $cache (first time: several minutes)"
GOFLAGS=-mod=mod go mod tidy >/dev/null
go build -trimpath -o "$bin.tmp" \
  -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=${version}" \
  ./cmd/pulumi-resource-kubernetes
mv "$bin.tmp" "$bin"
echo "$version" > "$cache/bin/.version"
echo "pulumi-resource-kubernetes v${version}: $bin"
