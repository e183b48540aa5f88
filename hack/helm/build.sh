#!/usr/bin/env bash
# Builds helm from the Go module proxy, at the version go.mod pins, into a
# cache shared by every clone on the machine, and prints the binary's path.
#
#   TINYMOD_HELM_DIR  overrides the cache folder.
#
# A binary already in the cache is not built again.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

version=$(go list -m -f '{{.Version}}' helm.sh/helm/v3)
dir=${TINYMOD_HELM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tinymod/helm/$version}
mkdir -p "$dir"
if [ ! -x "$dir/helm" ]; then
  echo "helm: building $version (a cold build takes a few minutes)..." >&2
  start=$SECONDS
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" \
    -o "$dir/helm.tmp" helm.sh/helm/v3/cmd/helm
  mv "$dir/helm.tmp" "$dir/helm"
  echo "helm: built in $((SECONDS - start))s" >&2
fi
echo "$dir/helm"
