# The subset of nixpkgs' lib the flake uses, same names and semantics.
let
  lib = rec {
    genAttrs =
      names: f:
      builtins.listToAttrs (
        map (n: {
          name = n;
          value = f n;
        }) names
      );
    hasPrefix = pre: s: builtins.substring 0 (builtins.stringLength pre) s == pre;
    hasSuffix =
      suf: s:
      let
        ls = builtins.stringLength s;
        lf = builtins.stringLength suf;
      in
      lf <= ls && builtins.substring (ls - lf) lf s == suf;
    removePrefix =
      pre: s:
      if hasPrefix pre s then
        builtins.substring (builtins.stringLength pre) (builtins.stringLength s) s
      else
        s;
    concatStringsSep = builtins.concatStringsSep;
    concatMapStringsSep = sep: f: list: builtins.concatStringsSep sep (map f list);
    optionals = cond: list: if cond then list else [ ];
    optionalString = cond: s: if cond then s else "";
    escapeShellArg = s: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString s)}'";
    escapeShellArgs = list: concatMapStringsSep " " escapeShellArg list;
    makeBinPath = pkgs: concatMapStringsSep ":" (p: "${p}/bin") pkgs;
    importTOML = path: builtins.fromTOML (builtins.readFile path);
    # nixpkgs: cleanSourceWith { src, filter ? _: _: true, name ? null }.
    cleanSourceWith =
      args:
      let
        known = [
          "src"
          "filter"
          "name"
        ];
        bad = builtins.filter (a: !(builtins.elem a known)) (builtins.attrNames args);
      in
      if bad != [ ] then
        throw "stand-in nixpkgs: lib.cleanSourceWith does not take ${builtins.toString bad}"
      else
        builtins.path {
          path = args.src;
          name = args.name or "source";
          filter = args.filter or (_: _: true);
        };
    licenses = {
      asl20 = {
        spdxId = "Apache-2.0";
        shortName = "asl20";
        free = true;
      };
      mit = {
        spdxId = "MIT";
        shortName = "mit";
        free = true;
      };
    };
    platforms.linux = [
      "x86_64-linux"
      "aarch64-linux"
    ];
  };
in
lib
