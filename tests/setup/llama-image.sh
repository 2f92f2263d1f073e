#!/usr/bin/env bash
# Builds the CPU container image of the real engine — llama-server, the shared
# libraries it links, and the SmolLM2 model — from a rootfs, pushes it to a
# docker-registry on 127.0.0.1, reads the digest back from the registry, and
# pulls the image by that digest into podman's storage, so a run finds it
# present and never pulls.
#
# usage: llama-image.sh LLAMA_SERVER GGUF REGISTRY_PORT [REPOSITORY [TAG]]
# Prints `IMAGE=127.0.0.1:<port>/<repository>:<tag>` and `DIGEST=sha256:<hex>`.
# The registry (storage in a temporary directory) is stopped on exit: the
# image lives on in podman's storage, addressed by digest.
# Needs: podman (with runc, catatonit), docker-registry, curl.
set -euo pipefail

server=$1
gguf=$2
port=$3
repository=${4:-infermark/llama-server-smollm2}
tag=${5:-11434.0.0}
name="127.0.0.1:$port/$repository"

work=$(mktemp -d)
registry_pid=
cleanup() {
  local rc=$?
  if [[ -n "$registry_pid" ]]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# The rootfs: the executable, every library ldd names (at the same paths),
# and the model where the experiment expects it.
root="$work/rootfs"
mkdir -p "$root/usr/local/bin" "$root/models" "$root/tmp"
cp "$server" "$root/usr/local/bin/llama-server"
for lib in $(ldd "$server" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp "$gguf" "$root/models/$(basename "$gguf")"
chmod 1777 "$root/tmp"

# A registry of our own on loopback, storage in the temporary directory.
cat >"$work/registry.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
log:
  level: error
EOF
if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then
  echo "error: something already answers on 127.0.0.1:$port; stop it or pick another port" >&2
  exit 1
fi
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" || {
  echo "error: docker-registry did not start on 127.0.0.1:$port:" >&2
  cat "$work/registry.log" >&2
  exit 1
}

tar -C "$root" -c . | podman import \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change 'ENTRYPOINT ["/usr/local/bin/llama-server"]' \
  - "$name:$tag" >/dev/null
podman push --quiet --tls-verify=false "$name:$tag" >&2

# The digest is the registry's (the pushed manifest is compressed, so it is
# not the local one); ask with the Accept list registries need.
accept='application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.list.v2+json,application/vnd.docker.distribution.manifest.v2+json'
digest=$(curl -fsSI -H "Accept: $accept" "http://127.0.0.1:$port/v2/$repository/manifests/$tag" |
  tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest" {print $2}')
if [[ ! "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
  echo "error: the registry gave no digest for $name:$tag (got '$digest')" >&2
  exit 1
fi
# Drop the imported image and pull the pushed one back by digest: the image
# in storage is then the registry's, and `inspect` reports the pinned digest.
podman rmi --force "$name:$tag" >/dev/null
podman pull --quiet --tls-verify=false "$name@$digest" >/dev/null

echo "IMAGE=$name:$tag"
echo "DIGEST=$digest"
true
