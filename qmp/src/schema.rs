//! A QAPI-style schema of the commands and events a server offers: it drives argument
//! checking (with QEMU's error texts) and produces `query-qmp-schema`'s introspection.
//!
//! The file format is a JSON array of QAPI definitions as QEMU's `qapi/*.json` writes
//! them (in strict JSON): `{"command": NAME, "data"?: MEMBERS|STRUCT, "returns"?: TYPE}`,
//! `{"event": NAME, "data"?: …}`, `{"struct": NAME, "data": MEMBERS}`,
//! `{"enum": NAME, "data": [VALUES]}`. MEMBERS is an object of `name: TYPE`, a leading
//! `*` marks an optional member; TYPE is a builtin (`str`, `int`, `int64`, `uint64`,
//! `size`, `bool`, `number`, `any`, `null`), a defined name, or `[TYPE]` for an array.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::QmpError;

/// Errors in a schema file.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Not JSON.
    #[error("schema is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A definition that does not follow the format.
    #[error("schema definition {index}: {msg}")]
    Definition {
        /// Position in the array.
        index: usize,
        /// What is wrong.
        msg: String,
    },
    /// A type used but never defined.
    #[error("schema: type '{name}' used by '{user}' is not defined")]
    UndefinedType {
        /// The missing type.
        name: String,
        /// Who uses it.
        user: String,
    },
}

/// A reference to a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeRef {
    /// A builtin or defined type.
    Named(String),
    /// `[T]`.
    Array(Box<TypeRef>),
}

impl TypeRef {
    fn parse(v: &Value) -> Option<TypeRef> {
        match v {
            Value::String(s) => Some(TypeRef::Named(s.clone())),
            Value::Array(a) if a.len() == 1 => {
                Some(TypeRef::Array(Box::new(TypeRef::parse(&a[0])?)))
            }
            _ => None,
        }
    }

    /// The introspection name: builtin integer types are all `int`, arrays `[T]`.
    fn introspection_name(&self) -> String {
        match self {
            TypeRef::Named(n) => builtin_json_type(n).map_or_else(|| n.clone(), str::to_string),
            TypeRef::Array(t) => format!("[{}]", t.introspection_name()),
        }
    }
}

/// A struct member or argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The name, without `*`.
    pub name: String,
    /// Its type.
    pub ty: TypeRef,
    /// Whether it may be left out.
    pub optional: bool,
}

/// A command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Its name.
    pub name: String,
    /// Its arguments.
    pub args: Vec<Member>,
    /// What it returns (`None`: `{}`).
    pub returns: Option<TypeRef>,
}

/// An event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDef {
    /// Its name.
    pub name: String,
    /// Its data members.
    pub data: Vec<Member>,
}

#[derive(Debug, Clone)]
enum TypeDef {
    Struct(Vec<Member>),
    Enum(Vec<String>),
}

/// A loaded schema.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    commands: Vec<Command>,
    events: Vec<EventDef>,
    types: BTreeMap<String, TypeDef>,
    /// Definition order of named types, for a stable introspection output.
    type_order: Vec<String>,
}

fn builtin_json_type(name: &str) -> Option<&'static str> {
    Some(match name {
        "str" => "str",
        "int" | "int8" | "int16" | "int32" | "int64" | "uint8" | "uint16" | "uint32" | "uint64"
        | "size" => "int",
        "bool" => "bool",
        "number" => "number",
        "any" => "any",
        "null" => "null",
        _ => return None,
    })
}

impl Schema {
    /// Parses a schema file's text.
    pub fn parse(text: &str) -> Result<Schema, SchemaError> {
        let defs: Vec<RawDef> = serde_json::from_str(text)?;
        let mut schema = Schema::default();
        let mut pending_data: Vec<(String, String)> = Vec::new();
        for (index, def) in defs.into_iter().enumerate() {
            let err = |msg: &str| SchemaError::Definition {
                index,
                msg: msg.to_string(),
            };
            let members = |data: Option<RawData>| match data {
                None => Ok(Vec::new()),
                Some(RawData::Members(m)) => {
                    parse_members(&m.0).ok_or_else(|| err("bad member type"))
                }
                Some(_) => Err(err("data must be an object of members")),
            };
            match def {
                RawDef {
                    command: Some(name),
                    data,
                    returns,
                    ..
                } => {
                    let args = match data {
                        Some(RawData::Name(s)) => {
                            pending_data.push((name.clone(), s));
                            Vec::new()
                        }
                        other => members(other)?,
                    };
                    let returns = match returns {
                        None => None,
                        Some(v) => Some(TypeRef::parse(&v).ok_or_else(|| err("bad returns"))?),
                    };
                    schema.commands.push(Command {
                        name,
                        args,
                        returns,
                    });
                }
                RawDef {
                    event: Some(name),
                    data,
                    ..
                } => {
                    schema.events.push(EventDef {
                        name,
                        data: members(data)?,
                    });
                }
                RawDef {
                    struct_: Some(name),
                    data,
                    ..
                } => {
                    let m = members(data)?;
                    schema.type_order.push(name.clone());
                    schema.types.insert(name, TypeDef::Struct(m));
                }
                RawDef {
                    enum_: Some(name),
                    data: Some(RawData::Values(values)),
                    ..
                } => {
                    schema.type_order.push(name.clone());
                    schema.types.insert(name, TypeDef::Enum(values));
                }
                _ => return Err(err("expected command, event, struct or enum")),
            }
        }
        // Commands whose data names a struct take that struct's members.
        for (cmd, sname) in pending_data {
            let Some(TypeDef::Struct(members)) = schema.types.get(&sname) else {
                return Err(SchemaError::UndefinedType {
                    name: sname,
                    user: cmd,
                });
            };
            let members = members.clone();
            if let Some(c) = schema.commands.iter_mut().find(|c| c.name == cmd) {
                c.args = members;
            }
        }
        schema.check_defined()?;
        Ok(schema)
    }

    fn check_defined(&self) -> Result<(), SchemaError> {
        let check = |t: &TypeRef, user: &str| -> Result<(), SchemaError> {
            let mut t = t;
            while let TypeRef::Array(inner) = t {
                t = inner;
            }
            let TypeRef::Named(n) = t else { return Ok(()) };
            if builtin_json_type(n).is_some() || self.types.contains_key(n) {
                Ok(())
            } else {
                Err(SchemaError::UndefinedType {
                    name: n.clone(),
                    user: user.to_string(),
                })
            }
        };
        for c in &self.commands {
            for m in &c.args {
                check(&m.ty, &c.name)?;
            }
            if let Some(r) = &c.returns {
                check(r, &c.name)?;
            }
        }
        for e in &self.events {
            for m in &e.data {
                check(&m.ty, &e.name)?;
            }
        }
        for (name, def) in &self.types {
            if let TypeDef::Struct(ms) = def {
                for m in ms {
                    check(&m.ty, name)?;
                }
            }
        }
        Ok(())
    }

    /// The commands, in definition order.
    pub fn commands(&self) -> &[Command] {
        &self.commands
    }

    /// The events, in definition order.
    pub fn events(&self) -> &[EventDef] {
        &self.events
    }

    /// The command of that name.
    pub fn command(&self, name: &str) -> Option<&Command> {
        self.commands.iter().find(|c| c.name == name)
    }

    /// The values of an enum type.
    pub fn enum_values(&self, name: &str) -> Option<&[String]> {
        match self.types.get(name) {
            Some(TypeDef::Enum(v)) => Some(v),
            _ => None,
        }
    }

    /// Checks a command's arguments as QEMU's input visitor does: members in schema
    /// order (missing, wrong type), then anything unexpected.
    pub fn check_args(&self, cmd: &Command, args: &Map<String, Value>) -> Result<(), QmpError> {
        self.check_members("", &cmd.args, args)
            .map_err(QmpError::generic)
    }

    fn check_members(
        &self,
        prefix: &str,
        members: &[Member],
        obj: &Map<String, Value>,
    ) -> Result<(), String> {
        let path = |name: &str| {
            if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            }
        };
        for m in members {
            match obj.get(&m.name) {
                None if m.optional => {}
                None => return Err(format!("Parameter '{}' is missing", path(&m.name))),
                Some(v) => self.check_value(&path(&m.name), &m.ty, v)?,
            }
        }
        if let Some(k) = obj.keys().find(|k| !members.iter().any(|m| &m.name == *k)) {
            return Err(format!("Parameter '{}' is unexpected", path(k)));
        }
        Ok(())
    }

    fn check_value(&self, path: &str, ty: &TypeRef, v: &Value) -> Result<(), String> {
        let wrong = |expected: &str| {
            Err(format!(
                "Invalid parameter type for '{path}', expected: {expected}"
            ))
        };
        match ty {
            TypeRef::Array(inner) => {
                let Value::Array(items) = v else {
                    return wrong("array");
                };
                for (i, item) in items.iter().enumerate() {
                    self.check_value(&format!("{path}[{i}]"), inner, item)?;
                }
                Ok(())
            }
            TypeRef::Named(name) => match builtin_json_type(name) {
                Some("int") => {
                    if v.is_i64() || v.is_u64() {
                        Ok(())
                    } else {
                        wrong("integer")
                    }
                }
                Some("str") if !v.is_string() => wrong("string"),
                Some("bool") if !v.is_boolean() => wrong("boolean"),
                Some("number") if !v.is_number() => wrong("number"),
                Some("null") if !v.is_null() => wrong("null"),
                Some(_) => Ok(()),
                None => match self.types.get(name) {
                    Some(TypeDef::Enum(values)) => {
                        let Value::String(s) = v else {
                            return wrong("string");
                        };
                        if values.contains(s) {
                            Ok(())
                        } else {
                            Err(format!("Parameter '{path}' does not accept value '{s}'"))
                        }
                    }
                    Some(TypeDef::Struct(members)) => {
                        let Value::Object(obj) = v else {
                            return wrong("object");
                        };
                        self.check_members(path, members, obj)
                    }
                    None => Ok(()),
                },
            },
        }
    }

    /// `query-qmp-schema`'s answer: SchemaInfo entries for every command and event and
    /// every type they use. Type names are readable rather than QEMU's masked numbers
    /// (clients must not depend on either).
    pub fn introspect(&self) -> Value {
        let mut out = Vec::new();
        let mut objects: Vec<(String, &[Member])> = Vec::new();
        let empty: &[Member] = &[];
        objects.push(("q_empty".into(), empty));
        let mut arrays: Vec<TypeRef> = Vec::new();
        let note_arrays = |t: &TypeRef, arrays: &mut Vec<TypeRef>| {
            let mut t = t;
            while let TypeRef::Array(inner) = t {
                if !arrays.contains(t) {
                    arrays.push(t.clone());
                }
                t = inner;
            }
        };
        for c in &self.commands {
            let arg_type = if c.args.is_empty() {
                "q_empty".to_string()
            } else {
                let n = format!("q_obj_{}-arg", c.name);
                objects.push((n.clone(), &c.args));
                n
            };
            for m in &c.args {
                note_arrays(&m.ty, &mut arrays);
            }
            let ret_type = match &c.returns {
                Some(t) => {
                    note_arrays(t, &mut arrays);
                    t.introspection_name()
                }
                None => "q_empty".to_string(),
            };
            out.push(json!({"name": c.name, "meta-type": "command", "arg-type": arg_type, "ret-type": ret_type}));
        }
        for e in &self.events {
            let arg_type = if e.data.is_empty() {
                "q_empty".to_string()
            } else {
                let n = format!("q_obj_{}-arg", e.name);
                objects.push((n.clone(), &e.data));
                n
            };
            for m in &e.data {
                note_arrays(&m.ty, &mut arrays);
            }
            out.push(json!({"name": e.name, "meta-type": "event", "arg-type": arg_type}));
        }
        for name in &self.type_order {
            match &self.types[name] {
                TypeDef::Struct(ms) => {
                    for m in ms {
                        note_arrays(&m.ty, &mut arrays);
                    }
                    objects.push((name.clone(), ms));
                }
                TypeDef::Enum(values) => {
                    let members: Vec<Value> = values.iter().map(|v| json!({"name": v})).collect();
                    out.push(json!({"name": name, "meta-type": "enum", "values": values, "members": members}));
                }
            }
        }
        for (name, members) in objects {
            let ms: Vec<Value> = members
                .iter()
                .map(|m| {
                    let mut o = json!({"name": m.name, "type": m.ty.introspection_name()});
                    if m.optional {
                        o["default"] = Value::Null;
                    }
                    o
                })
                .collect();
            out.push(json!({"name": name, "meta-type": "object", "members": ms}));
        }
        for a in arrays {
            let TypeRef::Array(inner) = &a else { continue };
            out.push(json!({"name": a.introspection_name(), "meta-type": "array", "element-type": inner.introspection_name()}));
        }
        for b in ["str", "int", "bool", "number", "any", "null"] {
            out.push(json!({"name": b, "meta-type": "builtin", "json-type": match b { "str" => "string", "int" => "int", "bool" => "boolean", other => other }}));
        }
        Value::Array(out)
    }
}

/// One definition as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDef {
    command: Option<String>,
    event: Option<String>,
    #[serde(rename = "struct")]
    struct_: Option<String>,
    #[serde(rename = "enum")]
    enum_: Option<String>,
    data: Option<RawData>,
    returns: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawData {
    Members(OrderedMembers),
    Name(String),
    Values(Vec<String>),
}

/// Members in file order (QEMU checks arguments in schema order; `serde_json::Map`
/// would sort them).
struct OrderedMembers(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for OrderedMembers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedMembers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of members")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<OrderedMembers, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = a.next_entry::<String, Value>()? {
                    v.push(entry);
                }
                Ok(OrderedMembers(v))
            }
        }
        d.deserialize_map(V)
    }
}

fn parse_members(m: &[(String, Value)]) -> Option<Vec<Member>> {
    m.iter()
        .map(|(k, v)| {
            let (name, optional) = match k.strip_prefix('*') {
                Some(n) => (n.to_string(), true),
                None => (k.clone(), false),
            };
            Some(Member {
                name,
                ty: TypeRef::parse(v)?,
                optional,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"[
        {"enum": "Target", "data": ["vm", "vcpu"]},
        {"struct": "Provider", "data": {"provider": "str", "*names": ["str"]}},
        {"command": "balloon", "data": {"value": "int"}},
        {"command": "query-status", "returns": "str"},
        {"command": "query-stats", "data": {"target": "Target", "*providers": ["Provider"]}, "returns": ["any"]},
        {"command": "query-blockstats", "data": {"*query-nodes": "bool"}},
        {"event": "STOP"}
    ]"#;

    fn check(cmd: &str, args: Value) -> Result<(), String> {
        let s = Schema::parse(SCHEMA).unwrap();
        let c = s.command(cmd).unwrap();
        s.check_args(c, args.as_object().unwrap())
            .map_err(|e| e.desc)
    }

    #[test]
    fn argument_errors_match_qemu() {
        // Texts observed on QEMU 7.2 for the same requests.
        assert_eq!(
            check("balloon", json!({})),
            Err("Parameter 'value' is missing".into())
        );
        assert_eq!(
            check("balloon", json!({"value": "x"})),
            Err("Invalid parameter type for 'value', expected: integer".into())
        );
        assert_eq!(
            check("balloon", json!({"value": 1.5})),
            Err("Invalid parameter type for 'value', expected: integer".into())
        );
        assert_eq!(
            check("balloon", json!({"value": 1, "foo": 2})),
            Err("Parameter 'foo' is unexpected".into())
        );
        assert_eq!(
            check("query-status", json!({"foo": 2})),
            Err("Parameter 'foo' is unexpected".into())
        );
        assert_eq!(
            check("query-stats", json!({"target": "foo"})),
            Err("Parameter 'target' does not accept value 'foo'".into())
        );
        assert_eq!(
            check("query-stats", json!({"target": 5})),
            Err("Invalid parameter type for 'target', expected: string".into())
        );
        assert_eq!(
            check(
                "query-stats",
                json!({"target": "vm", "providers": [{"provider": "kvm", "names": [1]}]})
            ),
            Err("Invalid parameter type for 'providers[0].names[0]', expected: string".into())
        );
        assert_eq!(
            check("query-stats", json!({"target": "vm", "providers": {}})),
            Err("Invalid parameter type for 'providers', expected: array".into())
        );
        assert_eq!(
            check("query-stats", json!({"target": "vm", "providers": [5]})),
            Err("Invalid parameter type for 'providers[0]', expected: object".into())
        );
        assert_eq!(
            check("query-blockstats", json!({"query-nodes": null})),
            Err("Invalid parameter type for 'query-nodes', expected: boolean".into())
        );
        assert_eq!(check("balloon", json!({"value": 5})), Ok(()));
        assert_eq!(check("query-blockstats", json!({})), Ok(()));
    }

    #[test]
    fn introspection_lists_everything_used() {
        let s = Schema::parse(SCHEMA).unwrap();
        let v = s.introspect();
        let items = v.as_array().unwrap();
        let find = |n: &str| items.iter().find(|i| i["name"] == n).cloned();
        let stats = find("query-stats").unwrap();
        assert_eq!(stats["meta-type"], "command");
        assert_eq!(stats["ret-type"], "[any]");
        let arg = find(stats["arg-type"].as_str().unwrap()).unwrap();
        assert_eq!(
            arg["members"][1],
            json!({"name": "providers", "type": "[Provider]", "default": null})
        );
        assert!(find("[Provider]").is_some());
        assert!(find("Target").unwrap()["values"] == json!(["vm", "vcpu"]));
        assert_eq!(find("STOP").unwrap()["arg-type"], "q_empty");
        assert_eq!(find("balloon").unwrap()["ret-type"], "q_empty");
        // Every referenced type name is itself described.
        for item in items {
            for key in ["arg-type", "ret-type", "element-type"] {
                if let Some(t) = item.get(key).and_then(Value::as_str) {
                    assert!(find(t).is_some(), "{t} is not described");
                }
            }
        }
    }

    #[test]
    fn undefined_types_are_rejected() {
        let e = Schema::parse(r#"[{"command": "x", "data": {"a": "Nope"}}]"#).unwrap_err();
        assert!(matches!(e, SchemaError::UndefinedType { .. }));
    }
}
