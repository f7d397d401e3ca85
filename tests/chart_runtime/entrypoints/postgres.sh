#!/bin/bash
# The official postgres image's ENTRYPOINT (docker-entrypoint.sh; CMD ["postgres"]), as far as the chart uses it, run
# with this machine's PostgreSQL (tests/chart_runtime/services.py says which version, against the chart's tag).
# What it does, as the image does: on an empty PGDATA, initdb with POSTGRES_USER and POSTGRES_PASSWORD (a password
# file), a temporary socket-only server to create POSTGRES_DB, then exec postgres with the rendered args.
# What differs, because every pod shares this machine (and each difference is said where it is made):
# - PGHOST/PGPORT are the binaries' compiled-in socket directory and port, mapped by the kubelet (services.py);
# - pods reach it over loopback, so loopback connections need the password (the image trusts only its own loopback);
# - as root it drops to this machine's postgres user (the image: gosu postgres) keeping CAP_DAC_READ_SEARCH, since
#   the pod's directories lie under the harness's private temporary directory (a container's would be its own).
set -Eeuo pipefail

if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi
if [ "$1" != 'postgres' ]; then
	exec "$@"
fi

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${PGDATA:?the image sets PGDATA}"

# docker_create_db_directories
mkdir -p "$PGDATA" "$PGHOST"
chmod 00700 "$PGDATA" 2>/dev/null || :
if [ "$(id -u)" = '0' ]; then
	find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
	find "$PGHOST" -maxdepth 0 \! -user postgres -exec chown postgres '{}' +
	exec setpriv --reuid=postgres --regid=postgres --init-groups \
		--inh-caps=+dac_read_search --ambient-caps=+dac_read_search "$BASH_SOURCE" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	# docker_verify_minimum_env (POSTGRES_HOST_AUTH_METHOD is not set by the chart)
	if [ -z "${POSTGRES_PASSWORD:-}" ]; then
		echo 'Error: Database is uninitialized and superuser password is not specified.' >&2
		exit 1
	fi
	# docker_init_database_dir + pg_setup_hba_conf (the image appends `host all all all scram-sha-256`)
	initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
		--auth-local=trust --auth-host=scram-sha-256
	printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
	# docker_temp_server_start, docker_setup_db, docker_temp_server_stop
	export PGPASSWORD="$POSTGRES_PASSWORD"
	pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k $PGHOST" -w start
	exists="$(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc --dbname postgres \
		--tuples-only --set db="$POSTGRES_DB" <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")"
	if [ -z "$exists" ]; then
		psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc --dbname postgres \
			--set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
	fi
	pg_ctl -D "$PGDATA" -m fast -w stop
	unset PGPASSWORD
	echo 'PostgreSQL init process complete; ready for start up.'
else
	echo 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
fi

# The image's postgres listens on '*' and its socket in /var/run/postgresql (compiled in): here on loopback (the
# binary's default) and in PGHOST, the kubelet's mapping of that directory; the rendered args come last and win.
shift
exec postgres -k "$PGHOST" "$@"
