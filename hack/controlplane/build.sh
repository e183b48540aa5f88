#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from the Go module proxy into a cache
# shared by every clone on the machine, and prints the folder they are in.
#
#   TINYMOD_CONTROLPLANE_DIR  overrides the cache folder.
#
# A binary already in the cache is not built again.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

k8s_version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
dir=${TINYMOD_CONTROLPLANE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tinymod/controlplane/k8s-${k8s_version}_etcd-${etcd_version}}
mkdir -p "$dir"

major=${k8s_version#v}; major=${major%%.*}
minor=${k8s_version#v*.}; minor=${minor%%.*}
build_date=$(date -u -d "@$(go mod download -json k8s.io/kubernetes | sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' | head -1 | xargs -I{} date -u -d {} +%s)" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)
k8s_ldflags=""
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  k8s_ldflags+=" -X '$pkg.gitVersion=$k8s_version' -X '$pkg.gitMajor=$major' -X '$pkg.gitMinor=$minor'"
  k8s_ldflags+=" -X '$pkg.gitTreeState=clean' -X '$pkg.buildDate=$build_date'"
done
etcd_ldflags="-X 'go.etcd.io/etcd/api/v3/version.GitSHA=${etcd_version}'"

build() { # name package ldflags
  local name=$1 pkg=$2 flags=$3
  if [ -x "$dir/$name" ]; then
    echo "controlplane: $name is cached in $dir" >&2
    return
  fi
  echo "controlplane: building $name from $pkg (a cold build takes minutes)..." >&2
  local start=$SECONDS
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $flags" -o "$dir/$name.tmp" "$pkg"
  mv "$dir/$name.tmp" "$dir/$name"
  echo "controlplane: built $name in $((SECONDS - start))s" >&2
}

build etcd ./etcd "$etcd_ldflags"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build kubectl k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"

echo "$dir"
