#!/bin/sh
# STAND-IN for the OpenClaw CLI, installed as /usr/local/bin/openclaw in the
# MINIMAL image only (the full image has the real one). It implements just
# what lobster runs, with the real CLI's argv, stdout/stderr split and exit
# codes (openclaw@2026.9.6):
#   config get KEY [--json]        config set KEY VALUE      configure | config
#   devices [list|approve ID|reject ID] [--json] [--timeout MS]
#   gateway                        --version
# It is not OpenClaw: the config is a flat KEY=VALUE file
# ($state/standin-config), not openclaw.json; no schema, no JSON5 typing; the
# set hint is always "Restart the gateway to apply."; the gateway is busybox
# httpd on $OPENCLAW_GATEWAY_PORT (all addresses, or $OPENCLAW_STANDIN_HOST).
# TEST HOOK, stand-in only: `devices simulate-request [NAME]` adds a pending
# pairing request (a real gateway makes one when a remote device connects)
# and prints its id.
# Input is never evaluated: keys and ids are checked against a fixed
# character set before they reach a file name or awk, values are stored as
# text (one line, no control characters other than tab).
set -u
umask 077
state=${OPENCLAW_STATE_DIR:-$HOME/.openclaw}
conf=$state/standin-config
devs=$state/standin-devices
pidfile=$state/standin-gateway.pid
port=${OPENCLAW_GATEWAY_PORT:-9000}
url=ws://127.0.0.1:$port

die() { printf '%s\n' "$*" >&2; exit 1; }
# A config key: dot-separated non-empty segments of [A-Za-z0-9_@/:+-].
valid_key() {
    case $1 in '' | .* | *. | *..* | *[!A-Za-z0-9_.@/:+-]*) return 1 ;; esac
}
# A request or device id: what simulate-request makes ([0-9a-f-]).
valid_id() { case $1 in '' | *[!0-9a-f-]*) return 1 ;; esac; }
lookup() {
    [ -f "$conf" ] && awk -v k="$1" 'index($0, k "=") == 1 { v = substr($0, length(k) + 2); f = 1 } END { if (f) print v; exit !f }' "$conf"
}
json_str() {
    printf '"%s"' "$(printf '%s' "$1" | awk '{ gsub(/\\/, "&&"); gsub(/"/, "\\\""); gsub(/\t/, "\\t"); printf "%s", $0 }')"
}
# cli_error JSON MESSAGE: fails as the real CLI does, with --json as a
# JSON object on stdout, else as text on stderr.
cli_error() {
    if [ "$1" = 1 ]; then
        printf '{\n  "ok": false,\n  "error": {\n    "type": "cli_error",\n    "message": %s\n  }\n}\n' "$(json_str "$2")"
        exit 1
    fi
    die "$2"
}
# Up: the pid file names a live busybox httpd serving this port.
gateway_up() {
    [ -f "$pidfile" ] || return 1
    read -r gpid gport <"$pidfile" || return 1
    case $gpid in '' | *[!0-9]*) return 1 ;; esac
    [ "$gport" = "$port" ] && tr '\0' ' ' 2>/dev/null <"/proc/$gpid/cmdline" | grep -q ' httpd '
}
need_gateway() { # json
    gateway_up && return 0
    msg="Gateway not reachable at $url (ECONNREFUSED)."
    if [ "$1" = 1 ]; then
        printf '{\n  "ok": false,\n  "error": {\n    "type": "gateway_transport_error",\n    "kind": "closed",\n    "message": %s\n  }\n}\n' "$(json_str "$msg")"
        exit 1
    fi
    die "$msg
Start it with \`openclaw gateway run\` or check \`openclaw gateway status\`.
Gateway target: $url"
}

config_get() {
    json=0 key= n=0
    for a in "$@"; do
        case $a in --json) json=1 ;; -*) die "error: unknown option '$a'" ;; *) key=$a n=$((n + 1)) ;; esac
    done
    [ "$n" = 1 ] || die "error: config get takes exactly one path"
    if ! valid_key "$key"; then
        cli_error "$json" "Unknown config path: $key. Run openclaw config schema to inspect valid paths."
    fi
    v=$(lookup "$key") || cli_error "$json" "Config path is valid but unset: $key. The runtime default applies until you set an authored value with openclaw config set $key <value>."
    if [ "$json" = 1 ] && ! printf '%s' "$v" | grep -Eqx 'true|false|null|-?(0|[1-9][0-9]*)(\.[0-9]+)?'; then
        json_str "$v"
        echo
    else
        printf '%s\n' "$v"
    fi
}

config_set() {
    [ $# -eq 2 ] || die "error: config set takes <path> <value>"
    key=$1 val=$2
    valid_key "$key" || die "Config validation failed: $key: invalid path"
    case $val in *[[:cntrl:]]*)
        case $(printf '%s' "$val" | tr -d '\t') in *[[:cntrl:]]*)
            die "Config validation failed: $key: control characters are not supported by the stand-in" ;;
        esac ;;
    esac
    if old=$(lookup "$key") && [ "$old" = "$val" ]; then
        echo "No change"
        return 0
    fi
    mkdir -p "$state" && chmod 700 "$state" || die "cannot create $state"
    tmp=$conf.tmp.$$
    { [ ! -f "$conf" ] || awk -v k="$key" 'index($0, k "=") != 1' "$conf"; printf '%s=%s\n' "$key" "$val"; } >"$tmp" \
        && chmod 600 "$tmp" && mv -f "$tmp" "$conf" || { rm -f "$tmp"; die "writing $conf failed"; }
    echo "Updated $key. Restart the gateway to apply."
}

configure() {
    if [ ! -t 0 ] || [ ! -t 1 ]; then
        die "Interactive configuration requires an interactive terminal (TTY).
For non-interactive setup, use these subcommands instead:
  openclaw config set <path> <value>  write a config entry
  openclaw config get <path>          read a config entry"
    fi
    echo "OpenClaw configure (stand-in)"
    while printf 'Set KEY=VALUE (empty line to finish): ' && IFS= read -r line && [ -n "$line" ]; do
        case $line in
        *=*) (config_set "${line%%=*}" "${line#*=}") || true ;;
        *) echo "expected KEY=VALUE" ;;
        esac
    done
    echo "Configuration saved."
}

# devices_args ARGS...: sets json and the positional `args` (one id at most).
devices_args() {
    json=0 id= n=0
    while [ $# -gt 0 ]; do
        case $1 in
        --json) json=1 ;;
        --timeout | --url | --token | --password)
            [ $# -ge 2 ] || die "error: option '$1' argument missing"
            shift ;;
        -*) die "error: unknown option '$1'" ;;
        *) id=$1 n=$((n + 1)) ;;
        esac
        shift
    done
}

devices_list() {
    devices_args "$@"
    [ "$n" = 0 ] || die "error: too many arguments for 'list'"
    need_gateway "$json"
    mkdir -p "$devs/pending" "$devs/paired"
    if [ "$json" = 1 ]; then
        printf '{\n  "pending": ['
        sep=
        for f in "$devs/pending"/*; do
            [ -f "$f" ] || continue
            printf '%s\n    {"requestId": %s, "deviceId": %s, "displayName": %s, "role": "operator"}' "$sep" \
                "$(json_str "${f##*/}")" "$(json_str "$(sed -n 1p "$f")")" "$(json_str "$(sed -n 2p "$f")")"
            sep=,
        done
        printf '\n  ],\n  "paired": ['
        sep=
        for f in "$devs/paired"/*; do
            [ -f "$f" ] || continue
            printf '%s\n    {"deviceId": %s, "displayName": %s, "role": "operator"}' "$sep" \
                "$(json_str "${f##*/}")" "$(json_str "$(cat "$f")")"
            sep=,
        done
        printf '\n  ]\n}\n'
        return 0
    fi
    np=$(ls "$devs/pending" | wc -l) nd=$(ls "$devs/paired" | wc -l)
    if [ "$np" -gt 0 ]; then
        echo "Pending ($np)"
        for f in "$devs/pending"/*; do printf '  %s  %s\n' "${f##*/}" "$(sed -n 2p "$f")"; done
    fi
    if [ "$nd" -gt 0 ]; then
        echo "Paired ($nd)"
        for f in "$devs/paired"/*; do printf '  %s  %s\n' "${f##*/}" "$(cat "$f")"; done
    fi
    if [ "$np" -eq 0 ] && [ "$nd" -eq 0 ]; then echo "No device pairing entries."; fi
    return 0
}

devices_approve() {
    devices_args "$@"
    [ "$n" -le 1 ] || die "error: too many arguments for 'approve'"
    need_gateway "$json"
    if [ "$n" = 0 ]; then
        # The real CLI only previews the newest request without an id.
        newest=$(ls -t "$devs/pending" 2>/dev/null | head -n 1)
        [ -n "$newest" ] || die "No pending device pairing requests to approve"
        echo "Selected pending device request $newest"
        die "Approve this exact request with: openclaw devices approve $newest"
    fi
    f=$devs/pending/$id
    valid_id "$id" && [ -f "$f" ] \
        || die "No pending device request matches $id. Run openclaw devices list and retry with the current request ID."
    dev=$(sed -n 1p "$f") name=$(sed -n 2p "$f")
    mkdir -p "$devs/paired"
    printf '%s\n' "$name" >"$devs/paired/$dev" && rm -f "$f" || die "approving $id failed"
    if [ "$json" = 1 ]; then
        printf '{\n  "requestId": %s,\n  "device": {"deviceId": %s, "displayName": %s, "role": "operator"}\n}\n' \
            "$(json_str "$id")" "$(json_str "$dev")" "$(json_str "$name")"
    else
        echo "Approved $dev ($id)"
    fi
}

devices_reject() {
    devices_args "$@"
    [ "$n" = 1 ] || die "error: missing required argument 'requestId'"
    need_gateway "$json"
    f=$devs/pending/$id
    if ! valid_id "$id" || [ ! -f "$f" ]; then
        [ "$json" = 0 ] || (cli_error 1 "unknown requestId")
        die "[openclaw] The CLI command failed.
[openclaw] Reason: unknown requestId"
    fi
    dev=$(sed -n 1p "$f")
    rm -f "$f" || die "rejecting $id failed"
    if [ "$json" = 1 ]; then
        printf '{\n  "requestId": %s,\n  "deviceId": %s\n}\n' "$(json_str "$id")" "$(json_str "$dev")"
    else
        echo "Rejected $dev"
    fi
}

# STAND-IN ONLY (test hook): a pending request as a remote device's
# connection would make; NAME is its display name.
devices_simulate_request() {
    name=${1:-test-device}
    case $name in *[!A-Za-z0-9_.\ -]*) die "simulate-request: NAME is letters, digits, space and _.-" ;; esac
    need_gateway 0
    mkdir -p "$devs/pending" "$devs/paired"
    id=$(cat /proc/sys/kernel/random/uuid) && dev=$(cat /proc/sys/kernel/random/uuid | tr -d -) \
        || die "simulate-request: no random ids"
    printf '%s\n%s\n' "$dev" "$name" >"$devs/pending/$id" || die "simulate-request: writing failed"
    echo "$id"
}

devices() {
    sub=${1:-}
    [ $# -gt 0 ] && shift
    case $sub in
    list) devices_list "$@" ;;
    approve) devices_approve "$@" ;;
    reject) devices_reject "$@" ;;
    simulate-request) devices_simulate_request "$@" ;;
    '') echo "Usage: openclaw devices [options] [command]" ;;
    *) die "error: unknown command '$sub'" ;;
    esac
}

gateway() {
    mkdir -p "$state/standin-www" && chmod 700 "$state" || die "cannot create $state"
    echo ok >"$state/standin-www/index.html"
    echo "$$ $port" >"$pidfile"
    echo "openclaw stand-in gateway pid $$ port $port"
    if [ -f "$conf" ]; then sed 's/^/openclaw stand-in config: /' "$conf"; fi
    exec busybox httpd -f -p "${OPENCLAW_STANDIN_HOST:+$OPENCLAW_STANDIN_HOST:}$port" -h "$state/standin-www"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
--version) echo "OpenClaw 0.0.0-standin" ;;
config)
    sub=${1:-}
    [ $# -gt 0 ] && shift
    case $sub in
    get) config_get "$@" ;;
    set) config_set "$@" ;;
    '') configure ;;
    *) die "error: unknown command '$sub'" ;;
    esac ;;
configure) configure ;;
devices) devices "$@" ;;
gateway) gateway ;;
*) die "error: unknown command '$cmd' (openclaw stand-in: config get|set, configure, devices list|approve|reject, gateway)" ;;
esac
