# A stand-in for nixpkgs, for checking infermark's flake with a Nix that can
# reach neither GitHub nor a binary cache:
#
#   nix flake check --override-input nixpkgs path:<copy of this directory>
#
# It offers only what the flake uses, with nixpkgs' names and argument
# conventions, and refuses arguments nixpkgs would not take (unknown
# attributes, buildRustPackage without cargoLock/cargoHash, fetchurl without
# a hash, ...). Its builders use the host's tools (cargo, cmake, a C
# compiler), named in host.json, which the test writes next to this file.
# Passing here proves the flake's wiring: attributes, arguments, outputs,
# the wrapper scripts. It does not prove that real nixpkgs accepts the flake.
{
  description = "stand-in for nixpkgs (tests only): the flake's wiring, not real nixpkgs";

  outputs =
    { self }:
    let
      lib = import ./lib.nix;
      host =
        if builtins.pathExists ./host.json then
          builtins.fromJSON (builtins.readFile ./host.json)
        else
          throw "stand-in nixpkgs: host.json is missing (tests/engine/nix.rs writes it: the host's PATH, CARGO_HOME, RUSTUP_HOME, cargo target dir)";
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (
        system: import ./pkgs.nix { inherit lib system host; }
      );
    };
}
