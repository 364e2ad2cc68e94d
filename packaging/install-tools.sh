# What packaging/build.sh needs besides Rust, installed when missing:
# cargo-deb (pinned, built once into ~/.cache/ebsnap/tools, where CI's cache
# keeps it) and Debian's rpm package (rpmbuild). tests/package.sh adds the
# checkers (lintian, rpmlint, man-db).
#
# Source it, don't run it: it exports
#   EBSNAP_CARGO_DEB  path of the cargo-deb executable
# and defines ebsnap_apt_install PACKAGE... (apt-get, through sudo when not
# root). Idempotent: a second call finds everything in place.
# Override the tools' place with EBSNAP_TOOLS.
#
# Why rpmbuild and not cargo-generate-rpm: a cold `cargo install
# cargo-generate-rpm` compiles 219 crates (its rpm crate always brings an
# OpenPGP signing stack), 5 minutes on two cores, against 52 s for
# cargo-deb; rpm itself is needed anyway for `rpm -qpl` and rpmlint.

ebsnap_cargo_deb_version="3.8.0"
ebsnap_tools="${EBSNAP_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ebsnap/tools}"

ebsnap_apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-tools: installing $* (apt-get)" >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2 \
    || { $sudo apt-get update -qq >&2 \
         && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2; }
}

ebsnap_install_tools() {
  EBSNAP_CARGO_DEB="$ebsnap_tools/bin/cargo-deb"
  if ! "$EBSNAP_CARGO_DEB" --version 2>/dev/null | grep -qF "$ebsnap_cargo_deb_version"; then
    echo "install-tools: building cargo-deb $ebsnap_cargo_deb_version into $ebsnap_tools (once, about a minute)" >&2
    env -u CARGO_TARGET_DIR cargo install --quiet --locked --force --root "$ebsnap_tools" \
      --version "$ebsnap_cargo_deb_version" cargo-deb >&2 || return 1
  fi
  command -v rpmbuild >/dev/null || ebsnap_apt_install rpm || return 1
  export EBSNAP_CARGO_DEB
}

ebsnap_install_tools
