#!/usr/bin/env bash
# Creates the DynamoDB tables used by dynamo-es, with the AWS CLI.
#
# Usage:
#   db/create_tables.sh [--no-endpoint | --endpoint-url URL] [--no-projections] [--slices N] [VIEW_TABLE ...]
#
# Endpoint, first match wins:
#   --no-endpoint or DYNAMO_ES_REAL_AWS=1   real AWS (no --endpoint-url)
#   --endpoint-url URL
#   $AWS_ENDPOINT_URL_DYNAMODB
#   $AWS_ENDPOINT_URL
#   http://localhost:8000                   (DynamoDB Local, docker-compose.yml)
#
# Table names:
#   $EVENTS_TABLE       (default Events)     HASH AggregateTypeAndId (S), RANGE AggregateIdSequence (N)
#   $SNAPSHOTS_TABLE    (default Snapshots)  HASH AggregateTypeAndId (S)
#   $CHECKPOINTS_TABLE  (default Checkpoints)  HASH LeaseKey (S)
#   VIEW_TABLE ...      (default TestViewTable)  HASH ViewId (S)
#   $KEYS_TABLE         (no default: created only when set)  HASH Subject (S):
#                       the data keys of personal data (feature encryption,
#                       docs/guide/forgetting.md)
#
# Projections: the events table gets a DynamoDB stream of view type
# NEW_IMAGE (enabled on an existing table that has none; an existing
# NEW_IMAGE or NEW_AND_OLD_IMAGES stream is kept, a KEYS_ONLY or OLD_IMAGE
# one is an error), and the checkpoint table is created. --no-projections
# (or DYNAMO_ES_NO_PROJECTIONS=1) skips both.
#
# Feeds: --slices N (1 to 1024) gives the events table the EventsBySlice
# index (HASH Slice S, RANGE CommitTime N, all attributes projected) and the
# tag dynamo-es:slices=N, which writers and feeds check (see
# dynamo_es::slice). The slice count never changes: a table tagged with
# another one is an error.
#
# All tables use on-demand (PAY_PER_REQUEST) billing. Tables that already
# exist are left alone, after checking that their key schema is the expected
# one. Safe to run more than once.
#
# Permissions: dynamodb:DescribeTable, dynamodb:CreateTable and (to enable
# the stream or the index on an existing events table) dynamodb:UpdateTable,
# with --slices dynamodb:TagResource and dynamodb:ListTagsOfResource, on the tables
# (db/iam_policy_admin.json). The application, once the tables exist, needs
# only db/iam_policy.json (no CreateTable).

set -euo pipefail

usage() {
  sed -n '2,42p' "$0" | sed 's/^# \{0,1\}//'
}

real_aws="${DYNAMO_ES_REAL_AWS:-0}"
projections=1
if [[ "${DYNAMO_ES_NO_PROJECTIONS:-0}" == "1" ]]; then
  projections=0
fi
endpoint=""
slices=""
view_tables=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-endpoint)
      real_aws=1
      shift
      ;;
    --no-projections)
      projections=0
      shift
      ;;
    --endpoint-url)
      if [[ $# -lt 2 ]]; then
        echo "error: --endpoint-url needs a URL" >&2
        exit 2
      fi
      endpoint="$2"
      shift 2
      ;;
    --slices)
      if [[ $# -lt 2 ]]; then
        echo "error: --slices needs a number of slices" >&2
        exit 2
      fi
      slices="$2"
      shift 2
      ;;
    --endpoint-url=*)
      endpoint="${1#--endpoint-url=}"
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    --)
      shift
      view_tables+=("$@")
      break
      ;;
    -*)
      echo "error: unknown option: $1" >&2
      usage >&2
      exit 2
      ;;
    *)
      view_tables+=("$1")
      shift
      ;;
  esac
done

events_table="${EVENTS_TABLE:-Events}"
snapshots_table="${SNAPSHOTS_TABLE:-Snapshots}"
checkpoints_table="${CHECKPOINTS_TABLE:-Checkpoints}"
if [[ ${#view_tables[@]} -eq 0 ]]; then
  view_tables=(TestViewTable)
fi

if [[ -n "$slices" ]] && ! [[ "$slices" =~ ^[0-9]+$ && "$slices" -ge 1 && "$slices" -le 1024 ]]; then
  echo "error: --slices must be a number of slices from 1 to 1024, not '$slices'" >&2
  exit 2
fi

if ! command -v aws >/dev/null 2>&1; then
  echo "error: the AWS CLI ('aws') is not installed or not on PATH" >&2
  exit 1
fi

# Never open a pager for CLI output (AWS CLI v2).
export AWS_PAGER=""

endpoint_args=()
if [[ "$real_aws" == "1" ]]; then
  # Make sure nothing from the environment or the CLI config redirects the
  # calls to an emulator.
  unset AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL
  export AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true
  echo "Target: real AWS (region: ${AWS_REGION:-${AWS_DEFAULT_REGION:-from the CLI configuration}})"
else
  if [[ -z "$endpoint" ]]; then
    endpoint="${AWS_ENDPOINT_URL_DYNAMODB:-${AWS_ENDPOINT_URL:-http://localhost:8000}}"
  fi
  endpoint_args=(--endpoint-url "$endpoint")
  # AWS CLI v1 reads only AWS_DEFAULT_REGION; an emulator accepts any region.
  if [[ -z "${AWS_DEFAULT_REGION:-}" ]]; then
    export AWS_DEFAULT_REGION="${AWS_REGION:-us-east-1}"
  fi
  echo "Target: $endpoint (region: $AWS_DEFAULT_REGION)"
fi

ddb() {
  aws dynamodb "$@" "${endpoint_args[@]+"${endpoint_args[@]}"}"
}

# The key schema of an existing table as "name:type:keytype" words, HASH first,
# e.g. "AggregateTypeAndId:S:HASH AggregateIdSequence:N:RANGE".
describe_keys() {
  local table="$1" keys attrs wanted name key_type attr_type attr_name attr_kind result=""
  keys="$(ddb describe-table --table-name "$table" \
    --query 'Table.KeySchema[].[AttributeName,KeyType]' --output text)"
  attrs="$(ddb describe-table --table-name "$table" \
    --query 'Table.AttributeDefinitions[].[AttributeName,AttributeType]' --output text)"
  for wanted in HASH RANGE; do
    while read -r name key_type; do
      [[ "$key_type" == "$wanted" ]] || continue
      attr_type=""
      while read -r attr_name attr_kind; do
        if [[ "$attr_name" == "$name" ]]; then
          attr_type="$attr_kind"
        fi
      done <<<"$attrs"
      result+="${result:+ }${name}:${attr_type}:${key_type}"
    done <<<"$keys"
  done
  printf '%s\n' "$result"
}

# The stream specification of a new events table (none for other tables).
stream_args=()

# create_table TABLE HASH_NAME HASH_TYPE [RANGE_NAME RANGE_TYPE]
# (with "${stream_args[@]}" added to create-table)
create_table() {
  local table="$1" hash_name="$2" hash_type="$3"
  local range_name="${4:-}" range_type="${5:-}"
  local expected="${hash_name}:${hash_type}:HASH"
  local key_schema=("AttributeName=${hash_name},KeyType=HASH")
  local attr_defs=("AttributeName=${hash_name},AttributeType=${hash_type}")
  if [[ -n "$range_name" ]]; then
    expected+=" ${range_name}:${range_type}:RANGE"
    key_schema+=("AttributeName=${range_name},KeyType=RANGE")
    attr_defs+=("AttributeName=${range_name},AttributeType=${range_type}")
  fi

  local err
  if err="$(ddb describe-table --table-name "$table" 2>&1 >/dev/null)"; then
    local actual
    actual="$(describe_keys "$table")"
    if [[ "$actual" != "$expected" ]]; then
      echo "error: table '$table' exists with key schema '$actual', expected '$expected'" >&2
      exit 1
    fi
    echo "Table '$table' already exists with the expected key schema; skipping."
    return 0
  fi
  if [[ "$err" != *ResourceNotFoundException* ]]; then
    echo "error: could not describe table '$table':" >&2
    echo "$err" >&2
    exit 1
  fi

  echo "Creating table '$table' (key: $expected, billing: PAY_PER_REQUEST)..."
  if ! err="$(ddb create-table \
    --table-name "$table" \
    --key-schema "${key_schema[@]}" \
    --attribute-definitions "${attr_defs[@]}" \
    --billing-mode PAY_PER_REQUEST \
    "${stream_args[@]+"${stream_args[@]}"}" 2>&1 >/dev/null)"; then
    if [[ "$err" == *ResourceInUseException* ]]; then
      echo "Table '$table' was created concurrently; waiting for it."
    else
      echo "error: could not create table '$table':" >&2
      echo "$err" >&2
      exit 1
    fi
  fi

  echo "Waiting for table '$table' to become active..."
  ddb wait table-exists --table-name "$table"
  echo "Table '$table' is ready."
}

# ensure_stream TABLE: a stream of view type NEW_IMAGE (or an existing
# NEW_AND_OLD_IMAGES one) on TABLE; prints its ARN.
ensure_stream() {
  local table="$1" view_type
  view_type="$(ddb describe-table --table-name "$table" \
    --query 'Table.StreamSpecification.StreamEnabled && Table.StreamSpecification.StreamViewType' \
    --output text)"
  case "$view_type" in
    NEW_IMAGE | NEW_AND_OLD_IMAGES)
      echo "Table '$table' already has a $view_type stream; keeping it."
      ;;
    KEYS_ONLY | OLD_IMAGE)
      echo "error: table '$table' has a $view_type stream; projections need NEW_IMAGE (or NEW_AND_OLD_IMAGES)." >&2
      echo "Replacing it starts a new stream without the old one's records: do it by hand if you mean it." >&2
      exit 1
      ;;
    *)
      echo "Enabling a NEW_IMAGE stream on table '$table'..."
      ddb update-table --table-name "$table" \
        --stream-specification StreamEnabled=true,StreamViewType=NEW_IMAGE >/dev/null
      ddb wait table-exists --table-name "$table"
      ;;
  esac
  echo "Stream: $(ddb describe-table --table-name "$table" --query 'Table.LatestStreamArn' --output text)"
}

# ensure_slice_index TABLE N: the EventsBySlice index and the tag
# dynamo-es:slices=N on TABLE (tagged first, as the crate's add_slice_index
# does); a table tagged with another count is an error.
ensure_slice_index() {
  local table="$1" count="$2" arn tagged index status
  arn="$(ddb describe-table --table-name "$table" --query 'Table.TableArn' --output text)"
  tagged="$(ddb list-tags-of-resource --resource-arn "$arn" \
    --query "Tags[?Key=='dynamo-es:slices'].Value | [0]" --output text)"
  if [[ -n "$tagged" && "$tagged" != "None" ]]; then
    if [[ "$tagged" != "$count" ]]; then
      echo "error: table '$table' has $tagged slices (tag dynamo-es:slices), not $count; a table's slice count never changes" >&2
      exit 1
    fi
  else
    ddb tag-resource --resource-arn "$arn" --tags "Key=dynamo-es:slices,Value=$count"
  fi
  index="$(ddb describe-table --table-name "$table" \
    --query "Table.GlobalSecondaryIndexes[?IndexName=='EventsBySlice'].IndexName | [0]" --output text)"
  if [[ "$index" == "EventsBySlice" ]]; then
    echo "Table '$table' already has the EventsBySlice index; keeping it."
  else
    echo "Adding the EventsBySlice index ($count slices) to table '$table'..."
    ddb update-table --table-name "$table" \
      --attribute-definitions AttributeName=Slice,AttributeType=S AttributeName=CommitTime,AttributeType=N \
      --global-secondary-index-updates '[{"Create":{"IndexName":"EventsBySlice","KeySchema":[{"AttributeName":"Slice","KeyType":"HASH"},{"AttributeName":"CommitTime","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}}}]' >/dev/null
  fi
  for _ in $(seq 1 300); do
    status="$(ddb describe-table --table-name "$table" \
      --query "Table.GlobalSecondaryIndexes[?IndexName=='EventsBySlice'].IndexStatus | [0]" --output text)"
    [[ "$status" == "ACTIVE" ]] && break
    sleep 2
  done
  if [[ "$status" != "ACTIVE" ]]; then
    echo "error: the EventsBySlice index of table '$table' is still $status" >&2
    exit 1
  fi
  echo "Index EventsBySlice on '$table': $count slices, ACTIVE."
}

if [[ "$projections" == "1" ]]; then
  stream_args=(--stream-specification StreamEnabled=true,StreamViewType=NEW_IMAGE)
fi
create_table "$events_table" AggregateTypeAndId S AggregateIdSequence N
stream_args=()
if [[ -n "$slices" ]]; then
  ensure_slice_index "$events_table" "$slices"
fi
create_table "$snapshots_table" AggregateTypeAndId S
for view_table in "${view_tables[@]}"; do
  create_table "$view_table" ViewId S
done
if [[ -n "${KEYS_TABLE:-}" ]]; then
  create_table "$KEYS_TABLE" Subject S
fi
if [[ "$projections" == "1" ]]; then
  ensure_stream "$events_table"
  create_table "$checkpoints_table" LeaseKey S
  echo "Done: $events_table (with a stream), $snapshots_table, $checkpoints_table, ${view_tables[*]}"
else
  echo "Done: $events_table, $snapshots_table, ${view_tables[*]}"
fi
