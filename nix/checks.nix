# `nix flake check`: the unit tests, clippy with warnings denied, rustfmt.
{
  pkgs,
  infermark,
  rev,
}:
let
  inherit (pkgs)
    lib
    rustPlatform
    runCommand
    cargo
    clippy
    rustfmt
    ;
  source = import ./source.nix { inherit lib; };
in
{
  tests = infermark.override { doCheck = true; };

  clippy = rustPlatform.buildRustPackage {
    pname = "infermark-clippy";
    inherit (source) version src;
    cargoLock.lockFile = ../Cargo.lock;
    env.INFERMARK_GIT_COMMIT = rev;
    nativeBuildInputs = [ clippy ];
    buildPhase = ''
      runHook preBuild
      cargo clippy --all-targets --offline -- -D warnings
      runHook postBuild
    '';
    doCheck = false;
    installPhase = ''
      touch "$out"
    '';
  };

  fmt = runCommand "infermark-fmt" { nativeBuildInputs = [ cargo rustfmt ]; } ''
    export HOME="$TMPDIR"
    cd ${source.src}
    cargo fmt --check
    touch "$out"
  '';
}
