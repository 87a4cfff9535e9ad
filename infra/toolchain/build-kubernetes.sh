#!/usr/bin/env bash
# Build the Kubernetes control plane and node components from the Go module k8s.io/kubernetes, into one
# multi-call binary cached outside the repository by version; skip when that version is already built.
#
# No registry here serves Kubernetes binaries. k8s.io/kubernetes requires its staging modules at v0.0.0
# (replaced by ./staging in its own go.mod), so `go install` refuses it: a small generated wrapper module
# requires it and replaces every staging module with the published v0.<minor>.<patch> of the same release.
# One binary holds kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy (each
# component's main is a thin call of cmd/<component>/app), so the build links once; the component is
# chosen by the name it is called by (symlinks) or by its first argument.
#
# v1.34 is the last release whose kubelet runs on cgroup v1 without `failCgroupV1: false`; this machine's
# cgroups are hybrid (see ../shared/LAB-NOTES.md).
set -euo pipefail
version="${KUBERNETES_VERSION:-1.34.4}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tradestack/kubernetes/v${version}"
bin="$cache/bin/kube"
components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

if [ -x "$bin" ] && [ -x "$cache/bin/pause" ] && [ "$("$bin" kubelet --version 2>/dev/null)" = "Kubernetes v${version}" ]; then
  exit 0
fi
command -v go >/dev/null || { echo "build-kubernetes: Go is required (https://go.dev)" >&2; exit 3; }

src="$cache/src"
mkdir -p "$src" "$cache/bin"
modroot="$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v${version}" \
           | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
staging_version="v0.${version#1.}"
replaces="$(sed -n 's#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"${staging_version}"'#p' "$modroot/go.mod")"
[ -n "$replaces" ] || { echo "build-kubernetes: no staging modules found in $modroot/go.mod" >&2; exit 3; }
go_line="$(sed -n 's/^go \(.*\)/\1/p' "$modroot/go.mod")"
cat > "$src/go.mod" <<GOMOD
module tradestack.local/kube

go ${go_line}

require k8s.io/kubernetes v${version}

replace (
${replaces}
)
GOMOD
cat > "$src/main.go" <<'GO'
// One binary, five Kubernetes components: called as kubelet (a symlink) or as `kube kubelet ...`.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
	_ "time/tzdata"
)

var commands = map[string]func() *cobra.Command{
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	"kubelet":                 func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
	"kube-proxy":              proxy.NewProxyCommand,
}

func main() {
	name := filepath.Base(os.Args[0])
	if _, ok := commands[name]; !ok && len(os.Args) > 1 {
		name = os.Args[1]
		os.Args = append([]string{name}, os.Args[2:]...)
	}
	build, ok := commands[name]
	if !ok {
		fmt.Fprintln(os.Stderr, "usage: kube {kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy} [flags]")
		os.Exit(2)
	}
	os.Exit(cli.Run(build()))
}
GO
minor="${version#*.}"; minor="${minor%%.*}"
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=v${version} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor}"
ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
echo "building Kubernetes v${version} (${components[*]}) from Go modules into $cache (first time: tens of minutes)"
cd "$src"
GOFLAGS=-mod=mod go mod tidy >/dev/null
go build -trimpath -o "$bin.tmp" -ldflags "$ldflags" .
# the pod sandbox's pause program, from the same release's source (no registry serves its image)
gcc -static -Os -DVERSION="v${version}" -o "$cache/bin/pause" "$modroot/build/pause/linux/pause.c"
mv "$bin.tmp" "$bin"
for c in "${components[@]}"; do ln -sfn kube "$cache/bin/$c"; done
"$bin" kubelet --version
