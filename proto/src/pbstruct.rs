//! JSON ↔ `google.protobuf.Struct`, for room metadata crossing gRPC (rooms API in,
//! forwarders out).

use std::collections::BTreeMap;

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value as PbValue};
use serde_json::{Map, Number, Value};

pub fn to_struct(map: &BTreeMap<String, Value>) -> Struct {
    Struct {
        fields: map.iter().map(|(k, v)| (k.clone(), to_pb(v))).collect(),
    }
}

fn to_pb(value: &Value) -> PbValue {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(to_pb).collect(),
        }),
        Value::Object(map) => Kind::StructValue(Struct {
            fields: map.iter().map(|(k, v)| (k.clone(), to_pb(v))).collect(),
        }),
    };
    PbValue { kind: Some(kind) }
}

pub fn from_struct(s: Struct) -> BTreeMap<String, Value> {
    s.fields.into_iter().map(|(k, v)| (k, from_pb(v))).collect()
}

fn from_pb(value: PbValue) -> Value {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        // Struct numbers are doubles; whole ones come back as integers, as JSON clients sent them.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
            Value::Number(Number::from(n as i64))
        }
        Some(Kind::NumberValue(n)) => Number::from_f64(n).map_or(Value::Null, Value::Number),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(list)) => Value::Array(list.values.into_iter().map(from_pb).collect()),
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| (k, from_pb(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_survives_the_round_trip() {
        let json: BTreeMap<String, Value> = serde_json::from_value(serde_json::json!({
            "s": "x", "i": 42, "f": 1.5, "b": true, "n": null,
            "list": [1, "two", {"three": 3}], "obj": {"nested": [false]}
        }))
        .unwrap();
        assert_eq!(from_struct(to_struct(&json)), json);
    }
}
