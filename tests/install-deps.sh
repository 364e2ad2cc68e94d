# Installs what ebsnap's tests and demo need besides Rust: the EC2 emulator
# (moto's server, pinned, in its own virtualenv so it never touches the system
# Python) and libfaketime (to move the emulator's clock and make old snapshots).
#
# Source it, don't run it: it exports
#   EBSNAP_MOTO_SERVER  path of the moto_server executable
#   EBSNAP_FAKETIME_LIB path of libfaketimeMT.so.1
#   EBSNAP_PROMTOOL     path of promtool (Prometheus), to check the metrics file
#   EBSNAP_MOTO_AMIS    moto's 44 built-in AMIs as a JSON file, for MOTO_AMIS_PATH
# Idempotent: a second call finds both in place and installs nothing.
# Override the virtualenv's place with EBSNAP_VENV.

ebsnap_moto_version="5.2.5"
ebsnap_venv="${EBSNAP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ebsnap/moto-$ebsnap_moto_version}"

ebsnap_find_faketime() {
  for candidate in \
    /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 \
    /usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1 \
    /usr/lib/faketime/libfaketimeMT.so.1 \
    /usr/local/lib/faketime/libfaketimeMT.so.1; do
    if [ -e "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

ebsnap_promtool_dir="${XDG_CACHE_HOME:-$HOME/.cache}/ebsnap/promtool"

ebsnap_install_deps() {
  if ! EBSNAP_FAKETIME_LIB=$(ebsnap_find_faketime); then
    echo "install-deps: installing libfaketime (Debian package faketime)" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2 || return 1
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq faketime >&2 || return 1
    EBSNAP_FAKETIME_LIB=$(ebsnap_find_faketime) || {
      echo "install-deps: faketime installed but libfaketimeMT.so.1 not found" >&2
      return 1
    }
  fi

  if [ ! -x "$ebsnap_venv/bin/moto_server" ]; then
    echo "install-deps: installing moto[server]==$ebsnap_moto_version into $ebsnap_venv" >&2
    python3 -m venv "$ebsnap_venv" >&2 || return 1
    "$ebsnap_venv/bin/pip" install --quiet --disable-pip-version-check \
      "moto[server]==$ebsnap_moto_version" >&2 || return 1
  fi
  EBSNAP_MOTO_SERVER="$ebsnap_venv/bin/moto_server"

  # moto's own list of 44 AMIs, unpacked. Given as MOTO_AMIS_PATH, it is all
  # the AMIs moto loads: without it moto adds each region's "latest" AMIs,
  # ~1,300 snapshots that every DescribeSnapshots scans (0.50 s a call
  # against 0.03 s with the 44), most of the suite's CPU. The 44 AMIs' own
  # snapshots, owned by the same account, still show that ebsnap selects by
  # its own tags.
  EBSNAP_MOTO_AMIS="$ebsnap_venv/builtin-amis.json"
  if [ ! -s "$EBSNAP_MOTO_AMIS" ]; then
    "$ebsnap_venv/bin/python" - "$EBSNAP_MOTO_AMIS" <<'PY' >&2 || return 1
import gzip, json, os, sys
import moto
source = os.path.join(os.path.dirname(moto.__file__), "ec2", "resources", "amis.json.gz")
with gzip.open(source, "rt", encoding="utf-8") as f:
    amis = json.load(f)
with open(sys.argv[1] + ".tmp", "w", encoding="utf-8") as f:
    json.dump(amis, f)
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
PY
  fi

  # promtool only: Debian's prometheus package unpacked into the cache, not
  # installed (no service, no system user, nothing outside the cache).
  EBSNAP_PROMTOOL="$(command -v promtool || echo "$ebsnap_promtool_dir/usr/bin/promtool")"
  if [ ! -x "$EBSNAP_PROMTOOL" ]; then
    echo "install-deps: unpacking promtool (Debian package prometheus) into $ebsnap_promtool_dir" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    local download
    download=$(mktemp -d) && chmod 755 "$download" || return 1
    (cd "$download" && apt-get download -qq prometheus >&2) \
      || { $sudo apt-get update -qq >&2 && (cd "$download" && apt-get download -qq prometheus >&2); } \
      || return 1
    mkdir -p "$ebsnap_promtool_dir" && dpkg-deb -x "$download"/prometheus_*.deb "$ebsnap_promtool_dir" || return 1
    rm -rf "$download"
    EBSNAP_PROMTOOL="$ebsnap_promtool_dir/usr/bin/promtool"
  fi
  export EBSNAP_MOTO_SERVER EBSNAP_MOTO_AMIS EBSNAP_FAKETIME_LIB EBSNAP_PROMTOOL
}

ebsnap_install_deps
