# `nix develop`: the toolchain and the tools the tests drive.
{
  mkShell,
  cargo,
  rustc,
  clippy,
  rustfmt,
  cmake,
  pkg-config,
  unzip,
  git,
  podman,
  skopeo,
}:
mkShell {
  packages = [
    cargo
    rustc
    clippy
    rustfmt
    cmake
    pkg-config
    unzip
    git
    podman
    skopeo
  ];
}
