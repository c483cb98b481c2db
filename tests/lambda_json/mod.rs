//! Shared by the Lambda tests (tests/projection_lambda.rs and the Lambda
//! event source mapping of tests/projector_sim.rs): stream records in the
//! JSON shape Lambda sends them in, as `aws_lambda_events` parses them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::types::{AttributeValue as StreamValue, Record};
use aws_smithy_types::base64::encode;
use serde_json::{json, Value};

/// A stream attribute value in Lambda's JSON shape.
fn lambda_value(value: &StreamValue) -> Value {
    match value {
        StreamValue::S(v) => json!({ "S": v }),
        StreamValue::N(v) => json!({ "N": v }),
        StreamValue::B(v) => json!({ "B": encode(v.as_ref()) }),
        StreamValue::Ss(v) => json!({ "SS": v }),
        StreamValue::Ns(v) => json!({ "NS": v }),
        StreamValue::Bs(v) => {
            json!({ "BS": v.iter().map(|b| encode(b.as_ref())).collect::<Vec<_>>() })
        }
        StreamValue::M(v) => json!({ "M": lambda_image(v) }),
        StreamValue::L(v) => json!({ "L": v.iter().map(lambda_value).collect::<Vec<_>>() }),
        StreamValue::Bool(v) => json!({ "BOOL": v }),
        StreamValue::Null(v) => json!({ "NULL": v }),
        other => panic!("unexpected attribute value {other:?}"),
    }
}

/// An image (keys or a new image) in Lambda's JSON shape.
fn lambda_image(image: &HashMap<String, StreamValue>) -> Value {
    Value::Object(
        image
            .iter()
            .map(|(name, value)| (name.clone(), lambda_value(value)))
            .collect(),
    )
}

/// A Lambda DynamoDB stream event holding `records` of stream `arn`, as
/// Lambda sends it.
pub fn lambda_event<'a>(arn: &str, records: impl IntoIterator<Item = &'a Record>) -> Value {
    let records: Vec<Value> = records
        .into_iter()
        .map(|record| {
            let change = record.dynamodb.as_ref().expect("a dynamodb part");
            let created = change
                .approximate_creation_date_time
                .expect("a creation time");
            let mut dynamodb = json!({
                "ApproximateCreationDateTime": created.as_secs_f64(),
                "Keys": lambda_image(change.keys.as_ref().expect("keys")),
                "SequenceNumber": change.sequence_number.as_ref().expect("a sequence number"),
                "SizeBytes": change.size_bytes.unwrap_or(100),
                "StreamViewType": "NEW_IMAGE",
            });
            if let Some(image) = &change.new_image {
                dynamodb["NewImage"] = lambda_image(image);
            }
            json!({
                "eventID": record.event_id.as_ref().expect("an event id"),
                "eventName": record.event_name.as_ref().expect("an event name").as_str(),
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": dynamodb,
                "eventSourceARN": arn,
            })
        })
        .collect();
    json!({ "Records": records })
}
