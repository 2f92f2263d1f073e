{
  description = "infermark: reproducible benchmarks of LLM inference servers";

  # The pin lives in flake.lock (nixos-25.11); `nix flake update` moves it.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      lib = nixpkgs.lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      # The revision every result records as the harness commit. A dirty
      # tree has no `rev`; newer Nix gives `dirtyRev` instead.
      rev = self.rev or self.dirtyRev or "unknown";
      perSystem = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      build =
        pkgs:
        let
          infermark = pkgs.callPackage ./nix/package.nix { inherit rev; };
          llama = pkgs.callPackage ./nix/llama-cpp.nix { };
        in
        {
          inherit infermark;
          inherit (llama) llama-server smollm2-gguf;
          nightly = pkgs.callPackage ./nix/nightly.nix {
            inherit infermark;
            inherit (llama) llama-server smollm2-gguf;
          };
        };
    in
    {
      packages = perSystem (
        pkgs:
        let
          b = build pkgs;
        in
        {
          default = b.infermark;
          inherit (b)
            infermark
            llama-server
            smollm2-gguf
            nightly
            ;
        }
      );

      apps = perSystem (
        pkgs:
        let
          b = build pkgs;
        in
        {
          default = {
            type = "app";
            program = "${b.infermark}/bin/infermark";
          };
          nightly = {
            type = "app";
            program = "${b.nightly}/bin/infermark-nightly";
          };
        }
      );

      devShells = perSystem (pkgs: {
        default = pkgs.callPackage ./nix/shell.nix { };
      });

      checks = perSystem (
        pkgs:
        # Imported, not callPackage'd: callPackage would add `override`
        # to the set, and every attribute of `checks` must be a derivation.
        import ./nix/checks.nix {
          inherit pkgs rev;
          infermark = (build pkgs).infermark;
        }
      );
    };
}
