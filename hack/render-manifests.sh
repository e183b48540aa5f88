#!/usr/bin/env bash
# Keeps the deployment manifests in step with their sources:
#   - the chart's crds/ are copies of config/crd/bases/;
#   - config/deploy/tinymod.yaml is the chart rendered with its defaults, for
#     kustomize users (config/deploy/kustomization.yaml), the gRPC token read
#     from a Secret named tinymod-grpc that the user creates.
# With an argument, only renders the latter, to that file (for the test that
# keeps them in step).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
helm=${HELM:-$(hack/helm/build.sh)}

out=${1:-}
if [ -z "$out" ]; then
  out=config/deploy/tinymod.yaml
  rm -f charts/tinymod/crds/*.yaml
  cp config/crd/bases/*.yaml charts/tinymod/crds/
fi

{
  echo "# Rendered from charts/tinymod with its default values by hack/render-manifests.sh"
  echo "# (make manifests); edit the chart, not this file."
  "$helm" template tinymod charts/tinymod --namespace tinymod \
    --set grpc.auth.create=false --set grpc.auth.existingSecret=tinymod-grpc |
    sed -e 's/app.kubernetes.io\/managed-by: Helm/app.kubernetes.io\/managed-by: kustomize/' -e '/helm.sh\/chart:/d'
} > "$out"
