# The stand-in package set: nixpkgs' names and argument conventions, host
# tools behind them. Every function rejects arguments nixpkgs would not take.
{
  lib,
  system,
  host,
}:
let
  inherit (builtins)
    attrNames
    elem
    filter
    isAttrs
    isBool
    isInt
    isString
    concatStringsSep
    ;
  bash = "/bin/bash";

  # fn: the nixpkgs name; known: the arguments nixpkgs takes.
  onlyKnown =
    fn: known: args:
    let
      bad = filter (a: !(elem a known)) (attrNames args);
    in
    if bad == [ ] then
      args
    else
      throw "stand-in nixpkgs: ${fn} does not take ${concatStringsSep ", " bad} (nixpkgs would refuse or ignore it)";

  checkMeta =
    fn: meta:
    let
      m = onlyKnown "${fn}: meta" [
        "description"
        "longDescription"
        "homepage"
        "license"
        "mainProgram"
        "platforms"
        "maintainers"
        "broken"
      ] meta;
    in
    if m ? description && !(isString m.description) then
      throw "stand-in nixpkgs: ${fn}: meta.description must be a string"
    else if m ? license && !(isAttrs m.license && m.license ? spdxId) then
      throw "stand-in nixpkgs: ${fn}: meta.license must be one of lib.licenses"
    else
      m;

  # nixpkgs: env values are strings, booleans, integers or derivations, and
  # must not also be top-level attributes.
  checkEnv =
    fn: args:
    let
      env = args.env or { };
      clash = filter (k: args ? ${k}) (attrNames env);
      badType = filter (
        k: !(isString env.${k} || isBool env.${k} || isInt env.${k} || (env.${k}.type or "") == "derivation")
      ) (attrNames env);
    in
    if clash != [ ] then
      throw "stand-in nixpkgs: ${fn}: ${concatStringsSep ", " clash} set both in env and at top level"
    else if badType != [ ] then
      throw "stand-in nixpkgs: ${fn}: env.${builtins.head badType} must be a string, boolean, integer or derivation"
    else
      env;

  mkDerivationArgs = [
    "name"
    "pname"
    "version"
    "src"
    "sourceRoot"
    "patches"
    "nativeBuildInputs"
    "buildInputs"
    "propagatedBuildInputs"
    "nativeCheckInputs"
    "unpackPhase"
    "patchPhase"
    "configurePhase"
    "buildPhase"
    "checkPhase"
    "installPhase"
    "preUnpack"
    "postUnpack"
    "prePatch"
    "postPatch"
    "preConfigure"
    "postConfigure"
    "preBuild"
    "postBuild"
    "preCheck"
    "postCheck"
    "preInstall"
    "postInstall"
    "cmakeFlags"
    "makeFlags"
    "buildFlags"
    "doCheck"
    "dontUnpack"
    "strictDeps"
    "enableParallelBuilding"
    "buildCommand"
    "outputHash"
    "outputHashAlgo"
    "outputHashMode"
    "preferLocalBuild"
    "allowSubstitutes"
    "passAsFile"
    "meta"
    "passthru"
    "env"
  ];

  stdenvDrv = derivation {
    name = "stand-in-stdenv";
    inherit system;
    builder = bash;
    PATH = host.path;
    hostPath = host.path;
    setup = ./setup.sh;
    args = [
      "-ec"
      ''
        mkdir -p "$out"
        sed "s|@hostPath@|$hostPath|" "$setup" > "$out/setup"
        true
      ''
    ];
  };

  # Internal: a derivation built by builder.sh with the stand-in stdenv.
  # `extra` carries attributes set by the stand-in itself (never user input).
  build =
    fn: args: extra:
    let
      env = checkEnv fn args;
      meta = checkMeta fn (args.meta or { });
      name =
        args.name or (
          if args ? pname && args ? version then
            "${args.pname}-${args.version}"
          else
            throw "stand-in nixpkgs: ${fn} needs name, or pname and version"
        );
      # As in nixpkgs, a bad meta fails the derivation's evaluation.
      drv = builtins.seq meta derivation (
        removeAttrs args [
          "meta"
          "passthru"
          "env"
        ]
        // env
        // extra
        // {
          inherit name system;
          # stdenv always names its outputs; `nix develop` relies on it.
          outputs = [ "out" ];
          builder = bash;
          args = [
            "-e"
            ./builder.sh
          ];
          stdenv = stdenvDrv;
        }
      );
    in
    drv
    // (args.passthru or { })
    // {
      inherit meta;
    }
    // lib.genAttrs (filter (a: args ? ${a}) [
      "pname"
      "version"
      "src"
    ]) (a: args.${a});

  mkDerivation = args: build "stdenv.mkDerivation" (onlyKnown "stdenv.mkDerivation" mkDerivationArgs args) { };

  # A host tool under a nixpkgs name: bin/ holds wrappers exec'ing the
  # host's executables, with the host's Rust toolchain homes.
  hostTool =
    name: exes:
    derivation {
      name = "stand-in-${name}";
      inherit system;
      builder = bash;
      PATH = host.path;
      exes = concatStringsSep " " exes;
      cargoHome = host.cargoHome;
      rustupHome = host.rustupHome;
      args = [
        "-ec"
        ''
          mkdir -p "$out/bin"
          for e in $exes; do
            p=$(command -v "$e") || { echo "stand-in nixpkgs: the host has no $e (for ${name})" >&2; exit 1; }
            printf '#!/bin/bash\nexport CARGO_HOME="''${CARGO_HOME:-%s}" RUSTUP_HOME="''${RUSTUP_HOME:-%s}"\nexec %q "$@"\n' \
              "$cargoHome" "$rustupHome" "$p" > "$out/bin/$e"
            chmod +x "$out/bin/$e"
          done
          true
        ''
      ];
    };

  self = {
    inherit lib;

    callPackage =
      f: overrides:
      let
        fn = if builtins.isFunction f then f else import f;
        auto = builtins.intersectAttrs (builtins.functionArgs fn) self;
        result = fn (auto // overrides);
      in
      if isAttrs result then
        result
        // {
          override = more: self.callPackage f (overrides // more);
        }
      else
        result;

    stdenv = {
      inherit mkDerivation;
      shell = bash;
      hostPlatform.system = system;
      buildPlatform.system = system;
    };

    mkShell =
      args:
      let
        a = onlyKnown "mkShell" [
          "name"
          "packages"
          "inputsFrom"
          "nativeBuildInputs"
          "buildInputs"
          "shellHook"
          "env"
          "meta"
          "passthru"
        ] args;
      in
      build "mkShell"
        (
          removeAttrs a [
            "packages"
            "inputsFrom"
          ]
          // {
            name = a.name or "nix-shell";
          }
        )
        {
          nativeBuildInputs = (a.packages or [ ]) ++ (a.nativeBuildInputs or [ ]);
        buildCommand = ''echo "stand-in mkShell: a shell environment is only for nix develop" >&2; exit 1'';
      };

    fetchurl =
      args:
      let
        a = onlyKnown "fetchurl" [
          "url"
          "urls"
          "hash"
          "sha256"
          "sha512"
          "name"
          "executable"
          "curlOpts"
          "meta"
          "passthru"
        ] args;
        url = a.url or (if a ? urls then builtins.head a.urls else throw "stand-in nixpkgs: fetchurl needs url or urls");
        hash =
          if a ? hash then
            a.hash
          else if a ? sha256 then
            if builtins.stringLength a.sha256 == 64 || builtins.stringLength a.sha256 == 52 then
              a.sha256
            else
              throw "stand-in nixpkgs: fetchurl ${url}: sha256 must be 64 hex or 52 base-32 digits"
          else
            throw "stand-in nixpkgs: fetchurl ${url}: a hash (hash or sha256) is required";
      in
      derivation {
        name = a.name or (baseNameOf url);
        builder = "builtin:fetchurl";
        system = "builtin";
        inherit url;
        urls = [ url ];
        outputHashMode = if a.executable or false then "recursive" else "flat";
        outputHashAlgo = "sha256";
        outputHash = hash;
        executable = a.executable or false;
        unpack = false;
        preferLocalBuild = true;
      };

    runCommand =
      name: env: buildCommand:
      build "runCommand" (onlyKnown "runCommand ${name}" mkDerivationArgs env // { inherit name; }) {
        inherit buildCommand;
      };

    writeShellApplication =
      args:
      let
        a = onlyKnown "writeShellApplication" [
          "name"
          "text"
          "runtimeInputs"
          "runtimeEnv"
          "meta"
          "passthru"
          "checkPhase"
          "excludeShellChecks"
          "extraShellCheckFlags"
          "bashOptions"
          "inheritPath"
          "derivationArgs"
        ] args;
      in
      build "writeShellApplication"
        {
          name = a.name;
          meta = (a.meta or { }) // {
            mainProgram = a.name;
          };
          passthru = a.passthru or { };
        }
        {
          text = a.text;
          runtimePath = lib.makeBinPath (a.runtimeInputs or [ ]);
          passAsFile = [ "text" ];
          buildCommand = ''
            mkdir -p "$out/bin"
            target="$out/bin/${a.name}"
            {
              echo "#!${bash}"
              echo "set -o errexit -o nounset -o pipefail"
              echo "export PATH=\"$runtimePath:\$PATH\""
              cat "$textPath"
            } > "$target"
            chmod +x "$target"
            bash -n "$target"
            if command -v shellcheck >/dev/null; then shellcheck "$target"; fi
          '';
        };

    rustPlatform.buildRustPackage =
      args:
      let
        rustArgs = [
          "cargoLock"
          "cargoHash"
          "cargoDeps"
          "cargoVendorDir"
          "cargoBuildFlags"
          "cargoTestFlags"
          "checkFlags"
          "cargoBuildType"
          "cargoCheckType"
          "buildNoDefaultFeatures"
          "buildFeatures"
          "checkFeatures"
          "useNextest"
          "auditable"
          "buildAndTestSubdir"
        ];
        a = onlyKnown "rustPlatform.buildRustPackage" (mkDerivationArgs ++ rustArgs) args;
        lock = onlyKnown "rustPlatform.buildRustPackage: cargoLock" [
          "lockFile"
          "lockFileContents"
          "outputHashes"
          "allowBuiltinFetchGit"
        ] a.cargoLock;
      in
      if args ? cargoSha256 then
        throw "stand-in nixpkgs: cargoSha256 is gone from nixpkgs; use cargoHash"
      else if !(a ? cargoLock || a ? cargoHash || a ? cargoDeps || a ? cargoVendorDir) then
        throw "stand-in nixpkgs: buildRustPackage: cargoHash, cargoVendorDir, cargoDeps, or cargoLock must be set"
      else if !(a ? cargoLock) then
        throw "stand-in nixpkgs: buildRustPackage: only cargoLock is supported by the stand-in (it builds offline from the host's crates)"
      else if !(lock ? lockFile) then
        throw "stand-in nixpkgs: buildRustPackage: cargoLock.lockFile is required by the stand-in"
      else
        build "rustPlatform.buildRustPackage"
          (
            removeAttrs a (rustArgs)
            // {
              nativeBuildInputs = [
                self.cargo
                self.rustc
              ] ++ (a.nativeBuildInputs or [ ]);
              doCheck = a.doCheck or true;
            }
          )
          {
            standinRust = true;
            cargoLockFile = lock.lockFile;
            cargoBuildFlags = a.cargoBuildFlags or [ ];
            cargoTestFlags = a.cargoTestFlags or [ ];
            checkFlags = a.checkFlags or [ ];
            CARGO_HOME = host.cargoHome;
            RUSTUP_HOME = host.rustupHome;
            CARGO_TARGET_DIR = host.targetDir;
          };

    cargo = hostTool "cargo" [ "cargo" ];
    rustc = hostTool "rustc" [
      "rustc"
      "rustdoc"
    ];
    clippy = hostTool "clippy" [
      "cargo-clippy"
      "clippy-driver"
    ];
    rustfmt = hostTool "rustfmt" [
      "rustfmt"
      "cargo-fmt"
    ];
    cmake = derivation {
      name = "stand-in-cmake";
      inherit system;
      builder = bash;
      PATH = host.path;
      wrapper = ./cmake-wrapper.sh;
      prebuilt = host.llamaServer or "";
      args = [
        "-ec"
        ''
          mkdir -p "$out/bin" "$out/nix-support"
          real=$(command -v cmake) || { echo "stand-in nixpkgs: the host has no cmake" >&2; exit 1; }
          sed -e "s|@cmake@|$real|" -e "s|@prebuilt@|$prebuilt|" "$wrapper" > "$out/bin/cmake"
          chmod +x "$out/bin/cmake"
          echo 'standinCmake=1' > "$out/nix-support/setup-hook"
          true
        ''
      ];
    };
    coreutils = hostTool "coreutils" [
      "basename"
      "cat"
      "cp"
      "cut"
      "dirname"
      "ln"
      "ls"
      "mkdir"
      "mktemp"
      "mv"
      "rm"
      "sha256sum"
    ];
    # `nix develop` starts its shell from nixpkgs' bashInteractive.
    bashInteractive = hostTool "bash-interactive" [ "bash" ];
    unzip = hostTool "unzip" [ "unzip" ];
    git = hostTool "git" [ "git" ];
    pkg-config = hostTool "pkg-config" [ "pkg-config" ];
    podman = hostTool "podman" [ "podman" ];
    skopeo = hostTool "skopeo" [ "skopeo" ];
  };
in
self
