# Shared by scripts/test and scripts/demo: installs the Debian packages the
# project needs when they are missing, saying which.

# Everything the build, the tests and the demo use. CUDA (nvcc) is not a Debian
# package here: GPU code is built only when nvcc is on PATH.
DPAR_PACKAGES=(cmake make g++ clang catch2 libbenchmark-dev libtbb-dev libopenmpi-dev openmpi-bin
               libopenblas-dev libdnnl-dev zlib1g-dev dataset-fashion-mnist python3 python3-matplotlib)

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
