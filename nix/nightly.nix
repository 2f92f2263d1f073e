# `nix run .#nightly`: puts the CPU engine and model where infermark looks
# for pinned files first, its content-addressed cache
# `<cache>/files/<sha256>/<name>` (`<cache>` is $INFERMARK_CACHE, else
# $XDG_CACHE_HOME/infermark, else ~/.cache/infermark), puts llama-server on
# PATH, then runs `infermark nightly` with the given arguments. A file already
# in place is left alone: its directory name is its sha256.
{
  writeShellApplication,
  coreutils,
  infermark,
  llama-server,
  smollm2-gguf,
}:
writeShellApplication {
  name = "infermark-nightly";
  runtimeInputs = [
    coreutils
    infermark
    llama-server
  ];
  text = ''
    cache="''${INFERMARK_CACHE:-''${XDG_CACHE_HOME:-''${HOME:?neither INFERMARK_CACHE, XDG_CACHE_HOME nor HOME is set}/.cache}/infermark}"

    # place FILE NAME: link FILE (a store path) as <cache>/files/<sha256>/NAME.
    place() {
      local sha dir
      sha=$(sha256sum "$1" | cut -d' ' -f1)
      dir="$cache/files/$sha"
      if [[ ! -e "$dir/$2" ]]; then
        mkdir -p "$dir"
        ln -sfn "$1" "$dir/.$2.$$"
        mv -T "$dir/.$2.$$" "$dir/$2"
      fi
    }
    place ${llama-server}/bin/llama-server llama-server
    place ${smollm2-gguf} ${smollm2-gguf.name}

    exec infermark nightly "$@"
  '';
}
