#!/bin/sh
# Creates (or replaces) the Kibana data view api-server-*, which matches the data stream the
# API's logs go to (api-server-logs; its hidden .ds-* backing indices are not matched), with
# @timestamp as its time field, and makes it the default. Safe to run any number of times:
# "override": true replaces a view with the same title, and 409 (same id) counts as done.
#
# Run by the one-shot kibana-setup service in docker-compose.yml once Kibana is healthy.
set -eu

KIBANA_URL="${KIBANA_URL:-http://kibana:5601}"
HERE="$(dirname "$0")"
RESPONSE="$(mktemp)"
trap 'rm -f "$RESPONSE"' EXIT

kibana_post() {
    curl --silent --show-error --retry 5 --retry-connrefused --retry-delay 3 \
        --output "$RESPONSE" --write-out '%{http_code}' \
        --request POST "$KIBANA_URL$1" \
        --header 'kbn-xsrf: true' --header 'Content-Type: application/json' \
        --data "$2"
}

status="$(kibana_post /api/data_views/data_view "@$HERE/data-view.json")"
case "$status" in
    200) echo "data view api-server-* created" ;;
    409) echo "data view api-server-* already exists" ;;
    *) echo "creating the data view failed: HTTP $status" >&2; cat "$RESPONSE" >&2; exit 1 ;;
esac

status="$(kibana_post /api/data_views/default '{"data_view_id": "api-server", "force": true}')"
if [ "$status" != 200 ]; then
    echo "setting the default data view failed: HTTP $status" >&2; cat "$RESPONSE" >&2; exit 1
fi
echo "api-server-* is the default data view"
