# The crate's source as the Nix builds see it: only what cargo reads, so an
# edit elsewhere (README, experiments, flake) does not rebuild the harness.
# The integration tests are kept because Cargo.toml declares their target;
# the stand-in nixpkgs under tests/nix is not.
{ lib }:
let
  root = ../.;
  keep =
    path: type:
    let
      rel = lib.removePrefix (toString root + "/") (toString path);
    in
    builtins.elem rel [
      "Cargo.toml"
      "Cargo.lock"
      "build.rs"
      "src"
      "tests"
    ]
    || lib.hasPrefix "src/" rel
    || (lib.hasPrefix "tests/" rel && !(lib.hasPrefix "tests/nix" rel));
in
{
  src = lib.cleanSourceWith {
    src = root;
    filter = keep;
    name = "infermark-source";
  };
  version = (lib.importTOML ../Cargo.toml).package.version;
}
