//! Rendered resources (JSON, as `gatehouse render` writes them for Envoy) to
//! the protobuf Envoy takes over xDS.
//!
//! The messages come from the descriptors envoy-types was generated from
//! (`build.rs`), so every Envoy message and extension is known. The walk is
//! ours rather than the JSON mapping's, for one reason: Envoy's configs use
//! an empty `Any` (`config: {}` in a route's `FilterConfig`, "enable this
//! filter here"), which the proto3 JSON mapping of `Any` cannot express
//! without a type. Well-known types other than `Any` (durations, wrappers,
//! `Struct`) hold no `Any` and go through prost-reflect's own mapping.

use base64::Engine as _;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value as Pv,
};
use serde_json::Value;

/// Why a resource does not convert, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ProtoError {
    /// The JSON path, e.g. `filter_chains[0].filters[0].typed_config.stat_prefix`.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

fn err(path: &str, message: impl Into<String>) -> ProtoError {
    ProtoError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Well-known types whose JSON form is not an object of their fields; in an
/// `Any` their JSON sits under `value`.
const SPECIAL: &[&str] = &[
    "google.protobuf.Duration",
    "google.protobuf.Timestamp",
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    "google.protobuf.FieldMask",
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
];

/// Every Envoy message, by name.
#[derive(Debug, Clone)]
pub struct Protos {
    pool: DescriptorPool,
}

impl Protos {
    /// The descriptors envoy-types was generated from.
    ///
    /// # Errors
    /// Descriptors that do not decode (a broken build).
    pub fn load() -> Result<Self, ProtoError> {
        let bytes = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_types.bin"));
        DescriptorPool::decode(bytes.as_slice())
            .map(|pool| Self { pool })
            .map_err(|e| err("", format!("envoy-types descriptors: {e}")))
    }

    /// `json` as the message `name` (e.g. `envoy.config.listener.v3.Listener`), encoded.
    ///
    /// # Errors
    /// An unknown message, field, enum value or `@type`, or a value of the
    /// wrong kind, with its path.
    pub fn encode(&self, name: &str, json: &Value) -> Result<Vec<u8>, ProtoError> {
        let desc = self
            .pool
            .get_message_by_name(name)
            .ok_or_else(|| err("", format!("no message {name}")))?;
        Ok(self.message(&desc, json, "")?.encode_to_vec())
    }

    fn message(
        &self,
        desc: &MessageDescriptor,
        json: &Value,
        path: &str,
    ) -> Result<DynamicMessage, ProtoError> {
        let name = desc.full_name();
        if name == "google.protobuf.Any" {
            return self.any(desc, json, path);
        }
        if name.starts_with("google.protobuf.") && SPECIAL.contains(&name) {
            return DynamicMessage::deserialize(desc.clone(), json.clone())
                .map_err(|e| err(path, format!("{name}: {e}")));
        }
        let object = json
            .as_object()
            .ok_or_else(|| err(path, format!("{name} must be an object")))?;
        let mut message = DynamicMessage::new(desc.clone());
        for (key, value) in object {
            if value.is_null() {
                continue;
            }
            let at = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let field = desc
                .get_field_by_json_name(key)
                .or_else(|| desc.get_field_by_name(key))
                .ok_or_else(|| err(&at, format!("{name} has no field {key}")))?;
            let converted = self.field(&field, value, &at)?;
            message
                .try_set_field(&field, converted)
                .map_err(|e| err(&at, e.to_string()))?;
        }
        Ok(message)
    }

    fn field(&self, field: &FieldDescriptor, json: &Value, path: &str) -> Result<Pv, ProtoError> {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                return Err(err(path, "a map without an entry type"));
            };
            let key_field = entry.map_entry_key_field();
            let value_field = entry.map_entry_value_field();
            let object = json
                .as_object()
                .ok_or_else(|| err(path, "a map must be an object"))?;
            let mut map = std::collections::HashMap::new();
            for (k, v) in object {
                let at = format!("{path}.{k}");
                let key = match key_field.kind() {
                    Kind::String => MapKey::String(k.clone()),
                    Kind::Bool => MapKey::Bool(k == "true"),
                    Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                        MapKey::I32(k.parse().map_err(|_| err(&at, "not an int32 key"))?)
                    }
                    Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                        MapKey::I64(k.parse().map_err(|_| err(&at, "not an int64 key"))?)
                    }
                    Kind::Uint32 | Kind::Fixed32 => {
                        MapKey::U32(k.parse().map_err(|_| err(&at, "not a uint32 key"))?)
                    }
                    _ => MapKey::U64(k.parse().map_err(|_| err(&at, "not a uint64 key"))?),
                };
                map.insert(key, self.single(&value_field.kind(), v, &at)?);
            }
            return Ok(Pv::Map(map));
        }
        if field.is_list() {
            let items = json
                .as_array()
                .ok_or_else(|| err(path, "a repeated field must be an array"))?;
            return items
                .iter()
                .enumerate()
                .map(|(i, v)| self.single(&field.kind(), v, &format!("{path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Pv::List);
        }
        self.single(&field.kind(), json, path)
    }

    fn single(&self, kind: &Kind, json: &Value, path: &str) -> Result<Pv, ProtoError> {
        let number = |what: &str| -> Result<f64, ProtoError> {
            json.as_f64()
                .or_else(|| json.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| err(path, format!("not {what}")))
        };
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        Ok(match kind {
            Kind::Message(desc) => Pv::Message(self.message(desc, json, path)?),
            Kind::Enum(desc) => match json {
                Value::String(s) => Pv::EnumNumber(
                    desc.get_value_by_name(s)
                        .ok_or_else(|| err(path, format!("{} has no value {s}", desc.full_name())))?
                        .number(),
                ),
                _ => Pv::EnumNumber(number("an enum number")? as i32),
            },
            Kind::Bool => Pv::Bool(json.as_bool().ok_or_else(|| err(path, "not a bool"))?),
            Kind::String => Pv::String(
                json.as_str()
                    .ok_or_else(|| err(path, "not a string"))?
                    .to_owned(),
            ),
            Kind::Bytes => Pv::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(json.as_str().ok_or_else(|| err(path, "not base64 text"))?)
                    .map_err(|e| err(path, format!("not base64: {e}")))?
                    .into(),
            ),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Pv::I32(
                json.as_i64()
                    .or_else(|| json.as_str().and_then(|s| s.parse().ok()))
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| err(path, "not an int32"))?,
            ),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Pv::I64(
                json.as_i64()
                    .or_else(|| json.as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| err(path, "not an int64"))?,
            ),
            Kind::Uint32 | Kind::Fixed32 => Pv::U32(
                json.as_u64()
                    .or_else(|| json.as_str().and_then(|s| s.parse().ok()))
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| err(path, "not a uint32"))?,
            ),
            Kind::Uint64 | Kind::Fixed64 => Pv::U64(
                json.as_u64()
                    .or_else(|| json.as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| err(path, "not a uint64"))?,
            ),
            Kind::Double => Pv::F64(number("a number")?),
            Kind::Float => Pv::F32(number("a number")? as f32),
        })
    }

    /// An `Any`: `{}` is the empty one; otherwise `@type` names the message
    /// the rest of the object (or, for a special well-known type, `value`) is.
    fn any(
        &self,
        desc: &MessageDescriptor,
        json: &Value,
        path: &str,
    ) -> Result<DynamicMessage, ProtoError> {
        let object = json
            .as_object()
            .ok_or_else(|| err(path, "an Any must be an object"))?;
        let mut any = DynamicMessage::new(desc.clone());
        if object.is_empty() {
            return Ok(any);
        }
        let type_url = object
            .get("@type")
            .and_then(Value::as_str)
            .ok_or_else(|| err(path, "an Any needs its @type"))?;
        let name = type_url.rsplit('/').next().unwrap_or(type_url);
        let inner = self
            .pool
            .get_message_by_name(name)
            .ok_or_else(|| err(path, format!("unknown @type {type_url}")))?;
        let content = if SPECIAL.contains(&name) {
            object.get("value").cloned().unwrap_or(Value::Null)
        } else {
            let mut rest = object.clone();
            rest.remove("@type");
            Value::Object(rest)
        };
        let value = self.message(&inner, &content, path)?.encode_to_vec();
        any.set_field_by_name("type_url", Pv::String(type_url.to_owned()));
        any.set_field_by_name("value", Pv::Bytes(value.into()));
        Ok(any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::listener::v3::Listener;

    fn bootstrap(path: &str) -> Value {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(path),
        )
        .expect("the committed config");
        serde_yaml_ng::from_str(&text).expect("yaml")
    }

    #[test]
    fn a_rendered_edge_converts_and_envoy_types_reads_it_back() {
        let protos = Protos::load().expect("descriptors");
        // The compose edge: wasm filters, ext_authz, a rate limit, per-route
        // FilterConfigs with an empty Any, clusters of every kind.
        let b = bootstrap("deploy/compose/config/envoy.yaml");
        for l in b["static_resources"]["listeners"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let bytes = protos
                .encode("envoy.config.listener.v3.Listener", l)
                .expect("the listener converts");
            let listener = Listener::decode(bytes.as_slice()).expect("decodes");
            assert_eq!(listener.name, l["name"].as_str().unwrap_or_default());
            assert!(!listener.filter_chains.is_empty());
        }
        for c in b["static_resources"]["clusters"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let bytes = protos
                .encode("envoy.config.cluster.v3.Cluster", c)
                .expect("the cluster converts");
            let cluster = Cluster::decode(bytes.as_slice()).expect("decodes");
            assert_eq!(cluster.name, c["name"].as_str().unwrap_or_default());
        }
    }

    #[test]
    fn what_is_not_envoy_config_is_refused_with_its_path() {
        let protos = Protos::load().expect("descriptors");
        let e = protos
            .encode(
                "envoy.config.cluster.v3.Cluster",
                &serde_json::json!({"name": "a", "connect_timeout": "1s", "lb_polcy": "ROUND_ROBIN"}),
            )
            .expect_err("a typo");
        assert_eq!(e.path, "lb_polcy");
        let e = protos
            .encode(
                "envoy.config.cluster.v3.Cluster",
                &serde_json::json!({"name": "a", "typed_extension_protocol_options": {"x": {"@type": "type.googleapis.com/nothing.Here"}}}),
            )
            .expect_err("an unknown type");
        assert!(e.message.contains("unknown @type"), "{e}");
        let e = protos
            .encode(
                "envoy.config.cluster.v3.Cluster",
                &serde_json::json!({"name": "a", "lb_policy": "NOPE"}),
            )
            .expect_err("an unknown enum value");
        assert_eq!(e.path, "lb_policy");
    }
}
