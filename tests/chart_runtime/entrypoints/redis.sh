#!/bin/bash
# The official redis image's ENTRYPOINT (docker-entrypoint.sh; CMD ["redis-server"]; WORKDIR /data), run with this
# machine's redis-server (tests/chart_runtime/services.py says which version, against the chart's tag).
# What differs, because every pod shares this machine:
# - the binary's compiled-in port (6379) is given as `--port $HARNESS_REDIS_PORT`, the kubelet's mapping of it,
#   before the rendered args (which win); the image's build turns protected mode off, this one keeps it on (every
#   client here is on loopback, which protected mode admits);
# - as root it drops to this machine's redis user (the image: gosu redis) keeping CAP_DAC_READ_SEARCH, since the
#   pod's directories lie under the harness's private temporary directory.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
	find . \! -user redis -exec chown redis '{}' +
	exec setpriv --reuid=redis --regid=redis --init-groups \
		--inh-caps=+dac_read_search --ambient-caps=+dac_read_search "$BASH_SOURCE" "$@"
fi

um="$(umask)"
if [ "$um" = '0022' ]; then
	umask 0077
fi

if [ "$1" = 'redis-server' ]; then
	shift
	if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then  # a config file comes first
		config="$1"
		shift
		set -- redis-server "$config" --port "$HARNESS_REDIS_PORT" "$@"
	else
		set -- redis-server --port "$HARNESS_REDIS_PORT" "$@"
	fi
fi
exec "$@"
