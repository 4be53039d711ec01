#!/bin/sh
# Loads the index template for the API's logs (index-template.json, next to this file) with a
# retention of LOG_RETENTION_DAYS days, then sets that retention on the data stream too, if it
# already exists (a template only applies to data streams created after it). Safe to run any
# number of times: both requests replace what was there.
#
# Run by the one-shot elasticsearch-setup service in docker-compose.yml, before Filebeat.
set -eu

ELASTICSEARCH_URL="${ELASTICSEARCH_URL:-http://elasticsearch:9200}"
DAYS="${LOG_RETENTION_DAYS:-14}"
TEMPLATE_NAME=api-server
DATA_STREAM=api-server-logs
HERE="$(dirname "$0")"
RESPONSE="$(mktemp)"
BODY="$(mktemp)"
trap 'rm -f "$RESPONSE" "$BODY"' EXIT

case "$DAYS" in
    '' | *[!0-9]* | 0*) echo "LOG_RETENTION_DAYS must be a whole number of days >= 1, not '$DAYS'" >&2; exit 2 ;;
esac

es_put() {
    curl --silent --show-error --retry 5 --retry-connrefused --retry-delay 3 \
        --output "$RESPONSE" --write-out '%{http_code}' \
        --request PUT "$ELASTICSEARCH_URL$1" \
        --header 'Content-Type: application/json' \
        --data "@$2"
}

sed "s/\"data_retention\": \"[0-9]*d\"/\"data_retention\": \"${DAYS}d\"/" \
    "$HERE/index-template.json" > "$BODY"
status="$(es_put "/_index_template/$TEMPLATE_NAME" "$BODY")"
if [ "$status" != 200 ]; then
    echo "loading the index template failed: HTTP $status" >&2; cat "$RESPONSE" >&2; exit 1
fi
echo "index template $TEMPLATE_NAME loaded: data streams api-server-*, retention ${DAYS}d"

printf '{"data_retention": "%sd"}' "$DAYS" > "$BODY"
status="$(es_put "/_data_stream/$DATA_STREAM/_lifecycle" "$BODY")"
case "$status" in
    200) echo "data stream $DATA_STREAM: retention ${DAYS}d" ;;
    404) echo "data stream $DATA_STREAM does not exist yet; the template gives it ${DAYS}d" ;;
    *) echo "setting the retention of $DATA_STREAM failed: HTTP $status" >&2; cat "$RESPONSE" >&2; exit 1 ;;
esac
