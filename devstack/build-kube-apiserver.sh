#!/usr/bin/env bash
# Build a real, current kube-apiserver from the k8s.io/kubernetes Go module and cache it outside
# the clone. The release and every module under it are pinned by devstack/kube-apiserver/go.mod
# and go.sum; a plain `go build` works because the release's generated OpenAPI code is committed.
#
# Usage:
#   devstack/build-kube-apiserver.sh                        the pinned release (prints the binary's path)
#   KUBE_VERSION=1.35.4 devstack/build-kube-apiserver.sh    another release: its staging modules are
#                                                           resolved now (not pinned), in a work folder
#   KUBE_VERSION=1.20.2 devstack/build-kube-apiserver.sh    the old server, from Debian's source package
#   KUBE_VERSION=1.37.2 devstack/build-kube-apiserver.sh --pin   re-pin go.mod and go.sum to a release
# A no-op when the binary is cached. One progress line per step on standard error.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
module="$here/kube-apiserver"
cache="${EKS_RESPONDER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eks-responder}"
log() { printf '[devstack] %s\n' "$*" >&2; }

pinned="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$module/go.mod")"
version="${KUBE_VERSION:-$pinned}"
version="v${version#v}"
pin=false
[[ "${1:-}" == "--pin" ]] && pin=true

if [[ "$version" == v1.20.* ]]; then
  exec bash "$here/build-kube-apiserver-1.20.sh"
fi

bin="$cache/bin/kube-apiserver-$version"
if [[ -x "$bin" ]] && ! $pin; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { log "Go is needed to build kube-apiserver $version (go.dev: 1.26 or newer)"; exit 1; }
mkdir -p "$cache/bin"
exec 9>"$cache/build.lock"
if ! flock -n 9; then
  log "another build of kube-apiserver is running; waiting for it"
  flock 9
fi
if [[ -x "$bin" ]] && ! $pin; then  # the build we waited for made it
  echo "$bin"
  exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/eks-responder-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
steps="$work/steps.log"
quiet() { "$@" >>"$steps" 2>&1 || { tail -n 40 "$steps" >&2; log "failed: $*"; exit 1; }; }
export GOFLAGS="" CGO_ENABLED=0 GOWORK=off

src="$work/module"
cp -r "$module" "$src"
if [[ "$version" != "$pinned" ]] || $pin; then
  # The staging modules a release replaces with local paths, read from that release's own go.mod,
  # each at the matching v0.minor.patch release.
  log "resolving k8s.io/kubernetes $version and its staging modules"
  gomod="$(cd "$src" && go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "$gomod" ]] || { log "k8s.io/kubernetes $version is not served by the module proxy"; exit 1; }
  staging="v0.${version#v1.}"
  edits=(-require="k8s.io/kubernetes@$version" -dropreplace=k8s.io/kubernetes)
  while read -r path; do
    edits+=(-replace="$path=$path@$staging")
  done < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod")
  (cd "$src" && quiet go mod edit "${edits[@]}" && quiet go mod tidy)
  if $pin; then
    cp "$src/go.mod" "$src/go.sum" "$module/"
    log "pinned $module/go.mod and go.sum to $version"
  fi
else
  log "downloading the modules pinned in devstack/kube-apiserver/go.sum (checked against it)"
  (cd "$src" && quiet go mod download && quiet go mod verify)
fi

total="$(cd "$src" && go list -mod=readonly -deps . | wc -l)"
log "compiling kube-apiserver $version: $total packages (about 5 minutes on 2 cores, once)"
minor="${version#v1.}"
minor="${minor%%.*}"
x=k8s.io/component-base/version
ldflags="-s -w -X $x.gitVersion=$version -X $x.gitMajor=1 -X $x.gitMinor=$minor"
ldflags+=" -X $x.gitTreeState=clean -X $x.buildDate=1970-01-01T00:00:00Z"
(
  cd "$src"
  go build -mod=readonly -trimpath -v -ldflags "$ldflags" -o "$work/kube-apiserver" . >"$work/build.log" 2>&1 &
  pid=$!
  start=$SECONDS
  tty=false
  [[ -t 2 ]] && tty=true
  last=-1
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    done_packages=$(grep -c '' "$work/build.log" 2>/dev/null || true)
    minute=$(((SECONDS - start) / 60))
    if $tty; then
      printf '\r[devstack] compiling: %ds, %s of %s packages' "$((SECONDS - start))" "$done_packages" "$total" >&2
    elif ((minute != last)); then  # in a CI log, a line a minute
      last=$minute
      log "compiling: ${minute} min, $done_packages of $total packages"
    fi
  done
  $tty && printf '\n' >&2
  if ! wait "$pid"; then
    tail -n 40 "$work/build.log" >&2
    log "build failed"
    exit 1
  fi
)
reported="$("$work/kube-apiserver" --version)"
[[ "$reported" == "Kubernetes $version" ]] || { log "the binary reports '$reported', not Kubernetes $version"; exit 1; }
install -m 0755 "$work/kube-apiserver" "$bin.tmp"
mv "$bin.tmp" "$bin"
log "cached $bin ($reported)"
echo "$bin"
