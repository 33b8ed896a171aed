#!/usr/bin/env bash
# The old local API server, v1.20.2, from Debian bookworm's kubernetes source package, cached
# outside the clone. Not built by default: `KUBE_VERSION=1.20.2 make apiserver` builds it, and the
# client's request suite then also runs against it (tests/integration/test_kube_http_old_server.py).
# Debian's Go 1.19 builds it offline from the vendored tree (a current Go does not).
# Usage: devstack/build-kube-apiserver-1.20.sh   (prints the binary's path; a no-op when cached)
set -euo pipefail

cache="${EKS_RESPONDER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eks-responder}"
# "-r2": vendored reflect2 replaced by 1.0.2 (see below); older caches are rebuilt.
bin="$cache/bin/kube-apiserver-v1.20.2-r2"
if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/build.lock"
flock 9  # one build at a time: a second waits, then finds the binary
[[ -x "$bin" ]] && { echo "$bin"; exit 0; }
work="$(mktemp -d "${TMPDIR:-/tmp}/eks-responder-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# Package-manager and compiler output goes to a log, shown only when a step fails: the terminal
# gets one line per step, and during the build a single line that updates in place.
steps="$work/steps.log"
log() { printf '[devstack] %s\n' "$*" >&2; }
quiet() { "$@" >>"$steps" 2>&1 || { tail -n 40 "$steps" >&2; log "failed: $*"; exit 1; }; }
need_apt=()
debian_go=/usr/lib/go-1.19/bin
[[ -x "$debian_go/go" ]] || need_apt+=(golang-1.19-go)
command -v rsync >/dev/null || need_apt+=(rsync)
command -v openssl >/dev/null || need_apt+=(openssl)
if ((${#need_apt[@]})); then
  log "installing build tools from Debian: ${need_apt[*]}"
  quiet apt-get update -qq
  quiet env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

apt_dir="$work/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/parts"
# A private source list (packages and sources), so the machine's apt configuration is never touched.
sed 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources > "$apt_dir/parts/src.sources"
apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/parts"
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
log "fetching the kubernetes source package (about 34 MB)"
quiet apt-get "${apt_opts[@]}" update -qq
(cd "$work" && quiet apt-get "${apt_opts[@]}" source --download-only -qq kubernetes)
tarball="$(ls "$work"/kubernetes_*.orig.tar.gz | head -n1)"
log "unpacking $(basename "$tarball")"
tar -C "$work" -xzf "$tarball"
src="$(ls -d "$work"/kubernetes-1.20.* | head -n1)"

# The vendored modern-go/reflect2 1.0.1 faults under Go 1.18+ when the server encodes a map
# (every custom resource): the process dies. Debian's reflect2 1.0.2 fixes it and has no
# dependencies, so its source replaces the vendored copy.
log "replacing vendored reflect2 with Debian's golang-github-modern-go-reflect2-dev"
(cd "$work" && quiet apt-get "${apt_opts[@]}" download -qq golang-github-modern-go-reflect2-dev)
dpkg-deb -x "$(ls "$work"/golang-github-modern-go-reflect2-dev_*.deb | head -n1)" "$work/reflect2"
rm -rf "$src/vendor/github.com/modern-go/reflect2"
cp -r "$work/reflect2/usr/share/gocode/src/github.com/modern-go/reflect2" "$src/vendor/github.com/modern-go/reflect2"

log "building kube-apiserver (about 7 minutes on 2 cores; done once, then cached in $cache)"
mkdir -p "$work/home"
(
  cd "$src"
  env -u GOPATH PATH="$debian_go:$PATH" GOTOOLCHAIN=local GOPROXY=off CGO_ENABLED=0 GOFLAGS= HOME="$work/home" GOCACHE="$work/gocache" \
    make WHAT=cmd/kube-apiserver GOLDFLAGS="-s -w" >"$work/build.log" 2>&1 &
  pid=$!
  start=$SECONDS
  # On a terminal, one line that updates in place; in a CI log, a line a minute.
  tty=false
  [[ -t 2 ]] && tty=true
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    kill -0 "$pid" 2>/dev/null || break
    packages=$(grep -c '' "$work/build.log" 2>/dev/null || echo 0)
    if $tty; then
      printf '\r[devstack] building kube-apiserver: %ds, %s lines of build output' "$((SECONDS - start))" "$packages" >&2
    elif (( (SECONDS - start) % 60 < 5 )); then
      log "still building... $((SECONDS - start))s"
    fi
  done
  $tty && printf '\n' >&2
  if ! wait "$pid"; then
    tail -n 40 "$work/build.log" >&2
    log "build failed"
    exit 1
  fi
)
mkdir -p "$cache/bin"
install -m 0755 "$src/_output/bin/kube-apiserver" "$bin.tmp"
mv "$bin.tmp" "$bin"
log "cached $bin"
echo "$bin"
