#!/usr/bin/env bash
# The README demo: start the built-in lab cluster, show the plan, run the rolling upgrade,
# show the nodes with the real kubectl, tear the lab down. Called by `make demo`.
set -euo pipefail
dir=${1:?lab directory}
target=${2:-v1.28.4}
here=$(cd "$(dirname "$0")/.." && pwd)
up="$here/.venv/bin/upgrader"
kc=(kubectl --kubeconfig "$dir/kubeconfig")

"$up" lab down --dir "$dir" --purge >/dev/null 2>&1 || true
echo "== upgrader lab up --dir $dir"
"$up" lab up --dir "$dir"
trap 'echo "== upgrader lab down"; "$up" lab down --dir "$dir" --purge' EXIT

echo; echo "== kubectl get nodes (before)"
"${kc[@]}" get nodes -o wide

echo; echo "== upgrader plan -i $dir/inventory.yaml --to $target"
"$up" plan -i "$dir/inventory.yaml" --to "$target"

if "$up" apply --help >/dev/null 2>&1; then
  echo; echo "== upgrader apply -i $dir/inventory.yaml --to $target --yes"
  "$up" apply -i "$dir/inventory.yaml" --to "$target" --yes
  echo; echo "== kubectl get nodes (after)"
  "${kc[@]}" get nodes -o wide
  echo; echo "== upgrader status -i $dir/inventory.yaml"
  "$up" status -i "$dir/inventory.yaml"
fi
