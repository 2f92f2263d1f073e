# infermark built by nixpkgs' Rust tooling from Cargo.lock. The flake's
# revision is embedded (build.rs reads INFERMARK_GIT_COMMIT), so every
# environment.json and statement names the harness build that produced it.
{
  lib,
  rustPlatform,
  rev ? "unknown",
  doCheck ? false,
}:
let
  source = import ./source.nix { inherit lib; };
in
rustPlatform.buildRustPackage {
  pname = "infermark";
  inherit (source) version src;
  cargoLock.lockFile = ../Cargo.lock;
  env.INFERMARK_GIT_COMMIT = rev;
  inherit doCheck;
  # Unit tests only: the integration tests need a container runtime, a
  # registry and a llama.cpp build, which a build sandbox does not have.
  cargoTestFlags = [
    "--lib"
    "--bins"
  ];
  meta = {
    description = "Reproducible benchmarks of LLM inference servers";
    license = lib.licenses.asl20;
    mainProgram = "infermark";
    platforms = lib.platforms.linux;
  };
}
