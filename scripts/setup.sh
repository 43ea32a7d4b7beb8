#!/usr/bin/env bash
# Prepares this machine to run and test Tani: Go, PostgreSQL with PostGIS,
# a running cluster that accepts the default URL, Node.js and npm (for the
# test that runs the official Node Fabric Gateway client against the
# devnet). Safe to run again: every
# step checks before it acts. Says what to do when it cannot act itself.
set -euo pipefail

say()  { printf 'setup: %s\n' "$*"; }
fail() { printf 'setup: %s\n' "$*" >&2; exit 1; }

DB_URL="${TANI_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/tani?sslmode=disable}"

command -v go >/dev/null || fail "Go is not installed. Install Go 1.26 (https://go.dev/doc/install) and run again."

# Root or sudo, for apt-get and the cluster.
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
as_root() {
  [ "$SUDO" = none ] && fail "need root to run: $* — run this script as root (or with passwordless sudo), or do it yourself."
  $SUDO "$@"
}

apt_updated=""
apt_install() {
  command -v apt-get >/dev/null || fail "no apt-get here: install $* with your package manager, then run again."
  if [ -z "$apt_updated" ]; then
    say "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  say "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Only a local database is ours to install and start.
case "$DB_URL" in
  *@127.0.0.1*|*@localhost*|*@\[::1\]*) local_db=1 ;;
  *) local_db="" ;;
esac

if [ -n "$local_db" ]; then
  if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt_install postgresql
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  if [ ! -f "/usr/share/postgresql/$ver/extension/postgis.control" ]; then
    apt_install "postgresql-$ver-postgis-3"
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    say "starting PostgreSQL $ver"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    pg_isready -q -h 127.0.0.1 -p 5432 || fail "PostgreSQL $ver did not start; see /var/log/postgresql/postgresql-$ver-main.log"
  fi
  # The development default connects as postgres over TCP without a
  # password. Debian asks for one, so trust loopback — on a development
  # machine only; production uses TANI_DATABASE_URL with credentials.
  if ! psql "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable" -Atqc 'select 1' >/dev/null 2>&1; then
    hba="/etc/postgresql/$ver/main/pg_hba.conf"
    if ! as_root grep -q '^# tani: trust loopback' "$hba"; then
      say "allowing password-less loopback connections for development in $hba"
      as_root sed -i '1i # tani: trust loopback for development\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
      as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
      sleep 1
    fi
  fi
fi

command -v psql >/dev/null || apt_install postgresql-client
psql "${DB_URL%%/tani*}/postgres?sslmode=disable" -Atqc 'select 1' >/dev/null 2>&1 \
  || psql "$DB_URL" -Atqc 'select 1' >/dev/null 2>&1 \
  || fail "cannot connect to PostgreSQL at ${DB_URL/:*@/:****@}. Check the server, or set TANI_DATABASE_URL."

# Node.js and npm run the official Node Fabric Gateway client in
# ledger/devnet/nodeclient's test (it installs its npm packages itself).
# That test skips without them, except under CI, so a machine we cannot
# install on gets a note, not a failure.
node_note=""
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if command -v apt-get >/dev/null && [ "$SUDO" != none ]; then
    command -v node >/dev/null || apt_install nodejs
    command -v npm >/dev/null || apt_install npm
  else
    say "Node.js or npm is missing and cannot be installed here: install Node.js 18.12+ and npm, or the Node gateway client test is skipped (and fails under CI)."
  fi
fi
command -v node >/dev/null && node_note=", Node.js $(node --version)"

# Chromium (Debian's package) runs the distributor portal's browser tests
# headless, driven from Go over the DevTools protocol (chromedp). Those
# tests skip without it, except under CI.
chromium_note=""
if ! command -v chromium >/dev/null; then
  if command -v apt-get >/dev/null && [ "$SUDO" != none ]; then
    apt_install chromium
  else
    say "Chromium is missing and cannot be installed here: install Debian's chromium, or the portal's browser tests are skipped (and fail under CI)."
  fi
fi
command -v chromium >/dev/null && chromium_note=", $(chromium --version 2>/dev/null | head -n 1)"

say "ready: Go $(go env GOVERSION), PostgreSQL with PostGIS$node_note$chromium_note"
