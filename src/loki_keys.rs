//! Loki's configuration files, read by `config`: every key of Loki v3.4's configuration
//! reference (the table in `loki_keys.txt`) is known here, so a Loki file starts Sawmill.
//!
//! A key falls in one of three groups:
//! - Sawmill has it (same name, same meaning), or [`translate`] maps it onto Sawmill's own key
//!   (`ruler.storage.local.directory` → `ruler.rule_path`): honoured;
//! - only Loki has it (gRPC, rings, memberlist, schema and index stores, caches, the query
//!   frontend...): [`deserialize_lenient`] takes it out of the tree and names it in the list
//!   that `server` logs once at start, in one warning line;
//! - neither has it: an error naming the key, so a typo is still caught.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

/// Loki's key table: blocks of dotted key paths (format in the file's header).
const TABLE: &str = include_str!("loki_keys.txt");

/// What the value of a key of Loki's configuration is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// A value Sawmill does not look into (scalar, list of scalars, free-form map).
    Leaf,
    /// A mapping whose keys are paths below this one in the same block.
    Section,
    /// A mapping holding the named block.
    Block(&'static str),
    /// A list of the named block.
    List(&'static str),
}

#[derive(Default)]
struct Block {
    keys: HashMap<&'static str, Kind>,
}

fn schema() -> &'static HashMap<&'static str, Block> {
    static SCHEMA: OnceLock<HashMap<&'static str, Block>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut blocks: HashMap<&'static str, Block> = HashMap::new();
        let mut current = "";
        for line in TABLE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            if let Some(name) = line.strip_prefix("== ") {
                current = name;
                blocks.entry(current).or_default();
                continue;
            }
            let (path, kind) = match line.split_once(" = ") {
                Some((p, b)) => match b.strip_prefix('[').and_then(|b| b.strip_suffix(']')) {
                    Some(inner) => (p, Kind::List(inner)),
                    None => (p, Kind::Block(b)),
                },
                None => (line, Kind::Leaf),
            };
            let block = blocks.entry(current).or_default();
            // Every prefix of a path is a section of the same block.
            let mut end = 0;
            while let Some(dot) = path[end..].find('.') {
                end += dot;
                block.keys.entry(&path[..end]).or_insert(Kind::Section);
                end += 1;
            }
            block.keys.insert(path, kind);
        }
        blocks
    })
}

/// One step of a key path: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(String),
    Index(usize),
}

fn dotted(steps: &[Step]) -> String {
    let mut s = String::new();
    for step in steps {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Where a walk through Loki's table stands: a block and the path inside it so far.
#[derive(Clone, Copy)]
struct Pos {
    block: &'static str,
    kind: Kind,
}

/// Is the key at `path` (from the top of the file) a key of Loki's configuration, with every
/// key under `value` one too? The error is the dotted path of the first key Loki does not have.
/// A path that runs on below one of Loki's plain values is not Loki's: that value is typed
/// by Loki, so a key under it is a typo.
pub fn check(path: &[Step], value: &Value) -> Result<(), String> {
    let mut pos = Pos {
        block: "loki",
        kind: Kind::Block("loki"),
    };
    let mut prefix = String::new();
    for (i, step) in path.iter().enumerate() {
        let next = step_into(pos, &mut prefix, step);
        match next {
            Some(p) => pos = p,
            None => return Err(dotted(&path[..=i])),
        }
        if pos.kind == Kind::Leaf && i + 1 < path.len() {
            return Err(dotted(&path[..=i + 1]));
        }
    }
    let mut at = path.to_vec();
    check_value(pos, &prefix, value, &mut at)
}

/// Takes one step from `pos`; `prefix` is the dotted path inside the current block.
fn step_into(pos: Pos, prefix: &mut String, step: &Step) -> Option<Pos> {
    let blocks = schema();
    match (pos.kind, step) {
        (Kind::List(b), Step::Index(_)) => {
            prefix.clear();
            Some(Pos {
                block: b,
                kind: Kind::Block(b),
            })
        }
        (Kind::Block(_) | Kind::Section, Step::Key(k)) => {
            let block = match pos.kind {
                Kind::Block(b) => {
                    prefix.clear();
                    b
                }
                _ => pos.block,
            };
            let rel = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            let kind = *blocks.get(block)?.keys.get(rel.as_str())?;
            *prefix = rel;
            Some(Pos { block, kind })
        }
        _ => None,
    }
}

fn check_value(pos: Pos, prefix: &str, value: &Value, at: &mut Vec<Step>) -> Result<(), String> {
    match (pos.kind, value) {
        (Kind::Leaf, _) | (_, Value::Null) => Ok(()),
        (Kind::Block(_) | Kind::Section, Value::Mapping(m)) => {
            for (k, v) in m {
                let key = key_text(k);
                at.push(Step::Key(key.clone()));
                let mut p = prefix.to_string();
                let next = step_into(pos, &mut p, &Step::Key(key)).ok_or_else(|| dotted(at))?;
                check_value(next, &p, v, at)?;
                at.pop();
            }
            Ok(())
        }
        (Kind::List(_), Value::Sequence(items)) => {
            for (i, v) in items.iter().enumerate() {
                at.push(Step::Index(i));
                let mut p = String::new();
                let next = step_into(pos, &mut p, &Step::Index(i)).ok_or_else(|| dotted(at))?;
                check_value(next, &p, v, at)?;
                at.pop();
            }
            Ok(())
        }
        // A section written as a scalar: Loki would refuse the type; so does Sawmill.
        _ => Err(dotted(at)),
    }
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Deserializes `tree` as `T`. A key `T` does not know but Loki's configuration has is taken
/// out of the tree and named in the returned list; a key neither knows is an error
/// `(dotted key, message)`, as any other error is.
pub fn deserialize_lenient<T: DeserializeOwned>(
    mut tree: Value,
) -> Result<(T, Vec<String>), (String, String)> {
    let mut ignored = Vec::new();
    loop {
        let err = match serde_path_to_error::deserialize::<_, T>(tree.clone()) {
            Ok(v) => return Ok((v, ignored)),
            Err(e) => e,
        };
        let key = err.path().to_string();
        let msg = err.inner().to_string();
        if !msg.starts_with("unknown field `") {
            return Err((key, msg));
        }
        let steps: Vec<Step> = err
            .path()
            .iter()
            .map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Step::Index(*index),
                serde_path_to_error::Segment::Map { key } => Step::Key(key.clone()),
                serde_path_to_error::Segment::Enum { variant } => Step::Key(variant.clone()),
                serde_path_to_error::Segment::Unknown => Step::Key("?".into()),
            })
            .collect();
        let value = get(&tree, &steps).cloned().unwrap_or(Value::Null);
        match check(&steps, &value) {
            Ok(()) => {
                remove(&mut tree, &steps);
                ignored.push(key);
            }
            Err(bad) if bad == key => {
                return Err((key, format!("{msg} (not a key of Sawmill or of Loki)")))
            }
            Err(bad) => {
                let last = bad.rsplit(['.', '[']).next().unwrap_or(&bad).to_string();
                return Err((bad, format!("unknown field `{last}` (not a key of Loki)")));
            }
        }
    }
}

fn get<'a>(tree: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    let mut node = tree;
    for s in steps {
        node = match (s, node) {
            (Step::Key(k), Value::Mapping(m)) => m.get(k.as_str())?,
            (Step::Index(i), Value::Sequence(v)) => v.get(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

fn get_mut<'a>(tree: &'a mut Value, steps: &[&str]) -> Option<&'a mut Value> {
    let mut node = tree;
    for k in steps {
        node = node.as_mapping_mut()?.get_mut(*k)?;
    }
    Some(node)
}

fn remove(tree: &mut Value, steps: &[Step]) {
    let Some((last, parent)) = steps.split_last() else {
        return;
    };
    let mut node = tree;
    for s in parent {
        node = match (s, node) {
            (Step::Key(k), Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(n) => n,
                None => return,
            },
            (Step::Index(i), Value::Sequence(v)) => match v.get_mut(*i) {
                Some(n) => n,
                None => return,
            },
            _ => return,
        };
    }
    if let (Step::Key(k), Value::Mapping(m)) = (last, node) {
        m.remove(k.as_str());
    }
}

/// Takes the key at `path` out of the tree and returns its value; a section left empty by it
/// goes too.
fn take(tree: &mut Value, path: &[&str]) -> Option<Value> {
    let (last, parent) = path.split_last()?;
    let m = get_mut(tree, parent)?.as_mapping_mut()?;
    let v = m.remove(*last)?;
    for n in (1..parent.len() + 1).rev() {
        let empty = matches!(get_mut(tree, &parent[..n]), Some(Value::Mapping(m)) if m.is_empty());
        if empty {
            if let Some(Value::Mapping(m)) = get_mut(tree, &parent[..n - 1]) {
                m.remove(parent[n - 1]);
            }
        }
    }
    Some(v)
}

fn set(tree: &mut Value, path: &[&str], value: Value) {
    let mut node = tree;
    for k in &path[..path.len() - 1] {
        let Some(m) = node.as_mapping_mut() else {
            return;
        };
        node = m
            .entry(Value::String((*k).to_string()))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
    }
    if let Some(m) = node.as_mapping_mut() {
        m.insert(Value::String(path[path.len() - 1].to_string()), value);
    }
}

fn is_set(v: &Option<Value>) -> bool {
    matches!(v, Some(v) if !v.is_null() && v.as_str() != Some(""))
}

/// Rewrites the Loki keys that mean one of Sawmill's own settings into that setting, before
/// the tree is deserialized. Returns the keys it made redundant (named in the warning line).
/// The error is `(dotted key, message)`.
pub fn translate(tree: &mut Value) -> Result<Vec<String>, (String, String)> {
    let mut ignored = Vec::new();
    if !tree.is_mapping() {
        return Ok(ignored);
    }
    // Where rule files live: Loki's local rule storage, else the common filesystem's rules
    // directory; Sawmill's `ruler.rule_path` is that directory. Loki's own `rule_path` (a
    // scratch directory) is then redundant.
    let storage_type = get_mut(tree, &["ruler", "storage", "type"]).cloned();
    let local = matches!(&storage_type, None | Some(Value::Null))
        || storage_type.as_ref().and_then(Value::as_str) == Some("local");
    let dir = if local {
        take(tree, &["ruler", "storage", "local", "directory"])
    } else {
        None
    };
    let common_dir = take(
        tree,
        &["common", "storage", "filesystem", "rules_directory"],
    );
    let rule_dir = if is_set(&dir) {
        dir
    } else if is_set(&common_dir) && get_mut(tree, &["ruler", "rule_path"]).is_none() {
        common_dir
    } else {
        None
    };
    if let Some(d) = rule_dir {
        if get_mut(tree, &["ruler", "rule_path"]).is_some_and(|v| v != &d) {
            ignored.push("ruler.rule_path".to_string());
        }
        if local && storage_type.is_some() {
            take(tree, &["ruler", "storage", "type"]);
        }
        set(tree, &["ruler", "rule_path"], d);
    }
    // Loki's map of remote-write clients: Sawmill sends to one.
    if let Some(clients) = take(tree, &["ruler", "remote_write", "clients"]) {
        let clients = match clients {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            _ => {
                return Err((
                    "ruler.remote_write.clients".into(),
                    "expected a map of client name to client".into(),
                ))
            }
        };
        if clients.len() > 1 {
            return Err((
                "ruler.remote_write.clients".into(),
                format!(
                    "{} clients: Sawmill sends recording rule samples to one remote-write endpoint; keep one",
                    clients.len()
                ),
            ));
        }
        if let Some((name, Value::Mapping(client))) = clients.into_iter().next() {
            let name = key_text(&name);
            for (k, v) in client {
                let k = key_text(&k);
                if k == "url" {
                    set(tree, &["ruler", "remote_write", "client", "url"], v);
                } else {
                    ignored.push(format!("ruler.remote_write.clients.{name}.{k}"));
                }
            }
        }
    }
    Ok(ignored)
}

/// Takes the keys of Loki's `limits_config` that Sawmill's limits lack out of each tenant's
/// overrides; `sawmill_keys` are the keys Sawmill's limits have. Returns them as
/// `overrides.<tenant>.<key>`.
pub fn strip_override_keys(tree: &mut Value, sawmill_keys: &HashSet<String>) -> Vec<String> {
    let mut ignored = Vec::new();
    let Some(Value::Mapping(tenants)) = get_mut(tree, &["overrides"]) else {
        return ignored;
    };
    for (tenant, over) in tenants.iter_mut() {
        let Value::Mapping(over) = over else {
            continue;
        };
        let loki_only: Vec<Value> = over
            .iter()
            .filter(|(k, v)| {
                let k = key_text(k);
                !sawmill_keys.contains(&k)
                    && check(
                        &[Step::Key("limits_config".into()), Step::Key(k.clone())],
                        v,
                    )
                    .is_ok()
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in loki_only {
            over.remove(&k);
            ignored.push(format!("overrides.{}.{}", key_text(tenant), key_text(&k)));
        }
    }
    ignored
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    fn keys(path: &str) -> Vec<Step> {
        path.split('.').map(|k| Step::Key(k.to_string())).collect()
    }

    #[track_caller]
    fn loki_key(path: &str, value: &str, want: Result<(), &str>) {
        let got = check(&keys(path), &yaml(value));
        assert_eq!(got, want.map_err(str::to_string), "{path}: {value}");
    }

    #[test]
    fn keys_of_loki() {
        loki_key("server.grpc_listen_port", "9096", Ok(()));
        loki_key(
            "memberlist",
            "{join_members: [a, b], bind_port: 7946}",
            Ok(()),
        );
        loki_key(
            "schema_config",
            "{configs: [{from: 2020-10-24, store: tsdb, object_store: filesystem, schema: v13, index: {prefix: index_, period: 24h}}]}",
            Ok(()),
        );
        loki_key(
            "schema_config",
            "{configs: [{from: 2020-10-24, shema: v13}]}",
            Err("schema_config.configs[0].shema"),
        );
        loki_key(
            "storage_config",
            "{aws: {s3forcepathstyle: true, bucketnames: x}, tsdb_shipper: {active_index_directory: /i}}",
            Ok(()),
        );
        loki_key(
            "query_range.results_cache.cache.embedded_cache",
            "{enabled: true, max_size_mb: 100}",
            Ok(()),
        );
        loki_key("common.ring.kvstore.store", "inmemory", Ok(()));
        loki_key(
            "common.ring.kvstore.stor",
            "inmemory",
            Err("common.ring.kvstore.stor"),
        );
        loki_key(
            "server.grpc_listen_prot",
            "1",
            Err("server.grpc_listen_prot"),
        );
        loki_key("nope", "1", Err("nope"));
        // Below a plain value of Loki's nothing is Loki's.
        loki_key(
            "limits_config.retention_stream.selector",
            "x",
            Err("limits_config.retention_stream.selector"),
        );
    }

    #[test]
    fn rule_directory_from_loki_keys() {
        let mut t = yaml(
            "ruler:\n  storage:\n    type: local\n    local:\n      directory: /etc/loki/rules\n  rule_path: /tmp/scratch\n",
        );
        assert_eq!(translate(&mut t).unwrap(), ["ruler.rule_path"]);
        assert_eq!(t, yaml("ruler:\n  rule_path: /etc/loki/rules\n"));

        let mut t = yaml("common:\n  path_prefix: /l\n  storage:\n    filesystem:\n      chunks_directory: /l/c\n      rules_directory: /l/rules\n");
        assert!(translate(&mut t).unwrap().is_empty());
        assert_eq!(
            t,
            yaml("common:\n  path_prefix: /l\n  storage:\n    filesystem:\n      chunks_directory: /l/c\nruler:\n  rule_path: /l/rules\n")
        );
    }

    #[test]
    fn one_remote_write_client() {
        let mut t = yaml("ruler:\n  remote_write:\n    enabled: true\n    clients:\n      local:\n        url: http://p/api/v1/write\n        queue_config:\n          capacity: 1\n");
        assert_eq!(
            translate(&mut t).unwrap(),
            ["ruler.remote_write.clients.local.queue_config"]
        );
        assert_eq!(
            t,
            yaml("ruler:\n  remote_write:\n    enabled: true\n    client:\n      url: http://p/api/v1/write\n")
        );
        let mut t = yaml("ruler:\n  remote_write:\n    clients:\n      a: {url: http://a}\n      b: {url: http://b}\n");
        assert_eq!(
            translate(&mut t).unwrap_err().0,
            "ruler.remote_write.clients"
        );
    }
}
