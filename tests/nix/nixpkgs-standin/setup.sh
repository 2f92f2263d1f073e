# The stand-in stdenv's setup, sourced by every builder and by `nix develop`:
# PATH from the inputs' bin/ then the host's tools, the inputs' setup hooks,
# and nixpkgs' phase sequence with its hook and override conventions.
PATH=
for p in $nativeBuildInputs $buildInputs; do
  if [[ -d $p/bin ]]; then PATH=${PATH:+$PATH:}$p/bin; fi
done
export PATH=${PATH:+$PATH:}@hostPath@
for p in $nativeBuildInputs $buildInputs; do
  if [[ -f $p/nix-support/setup-hook ]]; then source "$p/nix-support/setup-hook"; fi
done

runHook() {
  local hook=$1
  if [[ -n ${!hook:-} ]]; then eval "${!hook}"; fi
}

defaultUnpackPhase() {
  runHook preUnpack
  local before
  before=$(ls -A)
  if [[ -d $src ]]; then
    cp -r --no-preserve=mode "$src" source
  else
    case $src in
    *.tar.gz | *.tgz) tar xzf "$src" ;;
    *.zip | *.whl) unzip -q "$src" ;;
    *)
      echo "stand-in stdenv: cannot unpack $src" >&2
      return 1
      ;;
    esac
  fi
  local root=${sourceRoot:-}
  if [[ -z $root ]]; then
    root=$(comm -13 <(echo "$before") <(ls -A))
    if [[ $(echo "$root" | wc -l) != 1 ]]; then
      echo "stand-in stdenv: unpacking $src made several directories; set sourceRoot" >&2
      return 1
    fi
  fi
  cd "$root"
  chmod -R u+w .
  runHook postUnpack
}

defaultPatchPhase() {
  runHook prePatch
  runHook postPatch
}

defaultConfigurePhase() {
  runHook preConfigure
  if [[ -n ${standinCmake:-} ]]; then
    mkdir -p build
    cd build
    # shellcheck disable=SC2086
    cmake .. -DCMAKE_INSTALL_PREFIX="$out" $cmakeFlags "${cmakeFlagsArray[@]}"
  fi
  runHook postConfigure
}

defaultBuildPhase() {
  runHook preBuild
  if [[ -n ${standinRust:-} ]]; then
    # shellcheck disable=SC2086
    cargo build --release --offline --locked $cargoBuildFlags
  elif [[ -f Makefile ]]; then
    make -j"$NIX_BUILD_CORES"
  fi
  runHook postBuild
}

defaultCheckPhase() {
  runHook preCheck
  if [[ -n ${standinRust:-} ]]; then
    # shellcheck disable=SC2086
    cargo test --release --offline --locked $cargoTestFlags -- $checkFlags
  fi
  runHook postCheck
}

defaultInstallPhase() {
  runHook preInstall
  if [[ -n ${standinRust:-} ]]; then
    mkdir -p "$out/bin"
    find "$CARGO_TARGET_DIR/release" -maxdepth 1 -type f -executable -exec cp {} "$out/bin/" \;
  fi
  runHook postInstall
}

genericBuild() {
  if [[ -n ${buildCommand:-} ]]; then
    eval "$buildCommand"
    return
  fi
  if [[ -n ${standinRust:-} ]]; then
    # As nixpkgs' cargoSetupHook: the given Cargo.lock must be the source's.
    postUnpack="${postUnpack:-}"$'\n''cmp -s "$cargoLockFile" Cargo.lock || { echo "stand-in rustPlatform: cargoLock.lockFile differs from the source Cargo.lock" >&2; exit 1; }'
  fi
  local phase
  for phase in unpackPhase patchPhase configurePhase buildPhase checkPhase installPhase; do
    if [[ $phase == checkPhase && -z ${doCheck:-} ]]; then continue; fi
    echo "stand-in stdenv: $phase" >&2
    if [[ -n ${!phase:-} ]]; then
      eval "${!phase}"
    else
      "default${phase^}"
    fi
  done
}
