#!/usr/bin/env bash
# Offline schema validation of Kubernetes manifests with PyPI `kubernetes-validate`
# (bundled JSON schemas of Kubernetes 1.25 to 1.37; --strict rejects unknown fields).
# Installed into <repo>/.venv on first use.
#
#   scripts/k8s-validate.sh install                 # installs if missing; prints the path
#                                                   # of the kubernetes-validate executable
#   scripts/k8s-validate.sh --strict -k 1.28 FILE…  # runs it (exit 1 when a file fails)
#
# Environment: K8S_VALIDATE_VENV  venv to use (default: <repo>/.venv)
set -euo pipefail

VERSION=1.37.0
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${K8S_VALIDATE_VENV:-$repo/.venv}
bin=$venv/bin/kubernetes-validate

die() { echo "k8s-validate.sh: $*" >&2; exit 1; }

install() {
  if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "$VERSION" ]; then return; fi
  mkdir -p "$(dirname "$venv")"
  (
    # Two callers at once must not both build the venv.
    flock -w 600 8 || die "install lock"
    if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "$VERSION" ]; then exit 0; fi
    echo "k8s-validate.sh: installing kubernetes-validate==$VERSION into $venv" >&2
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2 || die "cannot create venv $venv (python3-venv missing?)"
    "$venv/bin/pip" install -q "kubernetes-validate==$VERSION" >&2 || die "pip install kubernetes-validate failed"
    [ "$("$bin" --version 2>/dev/null)" = "$VERSION" ] || die "$bin is not version $VERSION after install"
  ) 8>"${TMPDIR:-/tmp}/restash-k8s-validate.lock"
}

case "${1:-}" in
  install) install; echo "$bin" ;;
  "") die "usage: $0 install | [kubernetes-validate args…] FILE…" ;;
  *) install; exec "$bin" "$@" ;;
esac
