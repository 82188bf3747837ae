# Shared by scripts/test and scripts/demo: installs the Debian packages the
# project needs when they are missing, saying which.

# What the build and the tests use (scripts/test), and the demo's plot on top
# (scripts/demo): matplotlib and its numpy, fonts and image libraries are the
# largest install and no test needs them. CUDA (nvcc) is not a Debian package
# here: GPU code is built only when nvcc is on PATH.
DPAR_TEST_PACKAGES=(cmake make g++ clang catch2 libbenchmark-dev libtbb-dev libopenmpi-dev openmpi-bin
                    libopenblas-dev libdnnl-dev zlib1g-dev dataset-fashion-mnist python3 ninja-build)
DPAR_PACKAGES=("${DPAR_TEST_PACKAGES[@]}" python3-matplotlib)

ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "dpar: installing missing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "dpar: not root; install them with: sudo apt-get install ${missing[*]}" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# nvcc may be installed outside PATH (the CUDA toolkit's default prefix).
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

# The release preset's CUDA settings. Without a GPU the CUDA programs are built
# only to check that they compile cleanly (their tests skip): device code stops
# after nvcc's front end (DPAR_CUDA_DEVICE_SYNTAX_ONLY) for a virtual
# architecture, skipping cicc's optimizer and ptxas. With a GPU they get sm_90
# machine code (set explicitly: a build folder keeps cached values).
dpar_release_flags=()
if command -v nvcc >/dev/null 2>&1; then
  if ! nvidia-smi -L >/dev/null 2>&1 && [ ! -e /dev/nvidia0 ]; then
    dpar_release_flags+=(-DDPAR_CUDA_ARCHITECTURES=90-virtual -DCMAKE_CUDA_ARCHITECTURES=90-virtual
                         -DDPAR_CUDA_DEVICE_SYNTAX_ONLY=ON)
  else
    dpar_release_flags+=(-DDPAR_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_ARCHITECTURES=90 -DDPAR_CUDA_DEVICE_SYNTAX_ONLY=OFF)
  fi
fi

# dpar_configure PRESET [cmake arguments]: configures build/PRESET, with Ninja
# when it is installed and the folder is new (less overhead per target than
# make, and a target's sources start before the libraries it links are built);
# the log goes to build-PRESET.configure.log and is shown on failure.
dpar_configure() {
  local preset=$1 generator=()
  shift
  if [ ! -f "build/$preset/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
  cmake --preset "$preset" "${generator[@]}" "$@" >"build-$preset.configure.log" 2>&1 ||
    { cat "build-$preset.configure.log"; return 1; }
}
