#!/usr/bin/env bash
# A Postgres primary and a synchronous streaming standby on this machine,
# for the failover test (make failover-test) and for trying failover by
# hand. Debian's postgresql-common does the work; run as root (or as a
# user who may run pg_createcluster and sudo to postgres).
#
#   scripts/pg-failover.sh up        create both clusters (replacing old ones), wait until the standby is synchronous
#   scripts/pg-failover.sh url       print the multi-host database URL Tani takes
#   scripts/pg-failover.sh primary-url  print the primary's URL alone
#   scripts/pg-failover.sh read-url  print the standby's URL, for -database.read-url
#   scripts/pg-failover.sh promote   crash the primary (stop -m immediate) and promote the standby
#   scripts/pg-failover.sh status    which cluster runs, and in which role
#   scripts/pg-failover.sh down      stop and remove both clusters (safe to run again)
#
# Ports: PG_FAILOVER_PRIMARY_PORT (5442), PG_FAILOVER_STANDBY_PORT (5443).
# The standby is synchronous (synchronous_standby_names = '*' on the
# primary, synchronous_commit = on): a commit is acknowledged only once the
# standby has flushed it, so promoting the standby loses nothing that was
# acknowledged. The promoted standby has no synchronous standby of its own
# and commits alone, as a production cluster does until a replacement
# replica has caught up (docs/ARCHITECTURE.md, "Beyond one machine").
set -euo pipefail

PRIMARY=tani-fo-primary
STANDBY=tani-fo-standby
PRIMARY_PORT=${PG_FAILOVER_PRIMARY_PORT:-5442}
STANDBY_PORT=${PG_FAILOVER_STANDBY_PORT:-5443}
DATABASE=${PG_FAILOVER_DATABASE:-tani_failover}

die() { echo "pg-failover: $*" >&2; exit 1; }

command -v pg_createcluster >/dev/null || die "pg_createcluster not found: install postgresql-common (apt-get install postgresql)"
VERSION=${PG_FAILOVER_VERSION:-$(pg_lsclusters -h | awk 'NR==1 {print $1}')}
[ -n "$VERSION" ] || VERSION=$(ls /usr/lib/postgresql | sort -n | tail -1)
[ -x "/usr/lib/postgresql/$VERSION/bin/pg_basebackup" ] || die "no PostgreSQL $VERSION binaries under /usr/lib/postgresql/$VERSION"

as_postgres() {
	if [ "$(id -un)" = postgres ]; then "$@"; elif [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}
exists() { pg_lsclusters -h | awk -v v="$VERSION" -v c="$1" '$1==v && $2==c {found=1} END {exit !found}'; }
psql_at() { as_postgres psql -X -q -t -A -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"; }

standby_is_sync() { [ "$(psql_at "$PRIMARY_PORT" "SELECT sync_state FROM pg_stat_replication")" = sync ]; }
standby_has_database() { [ "$(psql_at "$STANDBY_PORT" "SELECT count(*) FROM pg_database WHERE datname = '$DATABASE'")" = 1 ]; }
standby_is_primary() { [ "$(psql_at "$STANDBY_PORT" "SELECT pg_is_in_recovery()")" = f ]; }

# wait_for DESCRIPTION COMMAND...: polls COMMAND for up to 60 s.
wait_for() {
	local what=$1; shift
	for _ in $(seq 1 300); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	die "timed out after 60 s waiting for $what"
}

down() {
	for c in "$STANDBY" "$PRIMARY"; do
		if exists "$c"; then pg_dropcluster --stop "$VERSION" "$c"; fi
	done
}

up() {
	down
	# The primary: trust on loopback (a test cluster), a synchronous standby.
	pg_createcluster "$VERSION" "$PRIMARY" -p "$PRIMARY_PORT" -- --auth-local=trust --auth-host=trust >/dev/null
	cat >"/etc/postgresql/$VERSION/$PRIMARY/conf.d/tani-failover.conf" <<-EOF
	listen_addresses = '127.0.0.1'
	shared_buffers = 64MB
	synchronous_standby_names = '*'
	synchronous_commit = on
	EOF
	pg_ctlcluster "$VERSION" "$PRIMARY" start
	wait_for "the primary to accept connections" psql_at "$PRIMARY_PORT" "SELECT 1"

	# The standby: a base backup of the primary with its own replication
	# slot, started in recovery (-R writes primary_conninfo and standby.signal).
	pg_createcluster "$VERSION" "$STANDBY" -p "$STANDBY_PORT" -- --auth-local=trust --auth-host=trust >/dev/null
	cat >"/etc/postgresql/$VERSION/$STANDBY/conf.d/tani-failover.conf" <<-EOF
	listen_addresses = '127.0.0.1'
	shared_buffers = 64MB
	EOF
	local data=/var/lib/postgresql/$VERSION/$STANDBY
	find "$data" -mindepth 1 -delete
	as_postgres "/usr/lib/postgresql/$VERSION/bin/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres \
		-D "$data" -R -X stream -C -S tani_standby >/dev/null
	pg_ctlcluster "$VERSION" "$STANDBY" start
	wait_for "the standby to stream synchronously" standby_is_sync
	# Tani creates its database when missing, but a read replica cannot:
	# create it now, so -database.read-url works from the first start.
	psql_at "$PRIMARY_PORT" "CREATE DATABASE $DATABASE" >/dev/null
	wait_for "the standby to replay the new database" standby_has_database
	echo "primary 127.0.0.1:$PRIMARY_PORT, synchronous standby 127.0.0.1:$STANDBY_PORT (PostgreSQL $VERSION)"
}

promote() {
	exists "$STANDBY" || die "no standby: run '$0 up' first"
	# A crash, not a shutdown: no checkpoint, connections cut.
	pg_ctlcluster "$VERSION" "$PRIMARY" stop -m immediate
	pg_ctlcluster "$VERSION" "$STANDBY" promote
	wait_for "the standby to leave recovery" standby_is_primary
	echo "primary 127.0.0.1:$PRIMARY_PORT crashed; 127.0.0.1:$STANDBY_PORT promoted"
}

status() {
	for c in "$PRIMARY" "$STANDBY"; do
		if ! exists "$c"; then echo "$c: absent"; continue; fi
		local port; port=$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$c" '$1==v && $2==c {print $3}')
		if r=$(psql_at "$port" "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END" 2>/dev/null); then
			echo "$c: 127.0.0.1:$port running as $r"
		else
			echo "$c: 127.0.0.1:$port down"
		fi
	done
}

primary_url() {
	echo "postgres://postgres@127.0.0.1:$PRIMARY_PORT/$DATABASE?sslmode=disable"
}

read_url() {
	echo "postgres://postgres@127.0.0.1:$STANDBY_PORT/$DATABASE?sslmode=disable"
}

url() {
	echo "postgres://postgres@127.0.0.1:$PRIMARY_PORT,127.0.0.1:$STANDBY_PORT/$DATABASE?sslmode=disable&target_session_attrs=read-write"
}

case "${1:-}" in
up) up ;;
promote) promote ;;
down) down ;;
status) status ;;
url) url ;;
primary-url) primary_url ;;
read-url) read_url ;;
*) die "usage: $0 up|url|primary-url|read-url|promote|status|down" ;;
esac
