//! JSON Patch (RFC 6902) over an entity: `add`, `remove`, `replace`, `move`, `copy`, `test`, with
//! JSON Pointers (RFC 6901). All or nothing: the patch applies to a copy.

use serde_json::Value;

/// Applies `patch` (a JSON array of operations) to `target`.
pub fn apply(target: &Value, patch: &Value) -> Result<Value, String> {
    let operations = patch.as_array().ok_or("a JSON Patch is an array of operations")?;
    let mut document = target.clone();
    for (index, operation) in operations.iter().enumerate() {
        apply_one(&mut document, operation).map_err(|e| format!("operation {index}: {e}"))?;
    }
    Ok(document)
}

fn apply_one(document: &mut Value, operation: &Value) -> Result<(), String> {
    let op = operation.get("op").and_then(Value::as_str).ok_or("`op` is missing")?;
    let path = operation.get("path").and_then(Value::as_str).ok_or("`path` is missing")?;
    let value = || operation.get("value").cloned().ok_or_else(|| format!("`{op}` needs a `value`"));
    let from = || operation.get("from").and_then(Value::as_str).ok_or_else(|| format!("`{op}` needs a `from`"));
    match op {
        "add" => add(document, path, value()?),
        "remove" => remove(document, path).map(drop),
        "replace" => {
            remove(document, path)?;
            add(document, path, value()?)
        }
        "move" => {
            let from = from()?;
            if path.starts_with(&format!("{from}/")) {
                return Err(format!("cannot move `{from}` into itself"));
            }
            let moved = remove(document, from)?;
            add(document, path, moved)
        }
        "copy" => {
            let copied = get(document, from()?)?.clone();
            add(document, path, copied)
        }
        "test" => {
            if *get(document, path)? == value()? {
                Ok(())
            } else {
                Err(format!("test failed at `{path}`"))
            }
        }
        other => Err(format!("unknown op `{other}` (add, remove, replace, move, copy, test)")),
    }
}

fn tokens(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path.strip_prefix('/').ok_or_else(|| format!("`{path}` is not a JSON Pointer (starts with `/`)"))?;
    Ok(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

fn get<'a>(document: &'a Value, path: &str) -> Result<&'a Value, String> {
    let mut node = document;
    for token in tokens(path)? {
        node = match node {
            Value::Object(map) => map.get(&token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("`{path}` does not exist"))?;
    }
    Ok(node)
}

fn parent<'a>(document: &'a mut Value, path: &str) -> Result<(&'a mut Value, String), String> {
    let mut tokens = tokens(path)?;
    let last = tokens.pop().ok_or("the root cannot be the target")?;
    let mut node = document;
    for token in tokens {
        node = match node {
            Value::Object(map) => map.get_mut(&token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("the parent of `{path}` does not exist"))?;
    }
    Ok((node, last))
}

fn add(document: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *document = value;
        return Ok(());
    }
    let (node, last) = parent(document, path)?;
    match node {
        Value::Object(map) => {
            map.insert(last, value);
            Ok(())
        }
        Value::Array(items) => {
            let index = if last == "-" { items.len() } else { index(&last, path)? };
            if index > items.len() {
                return Err(format!("`{path}` is past the end of the array"));
            }
            items.insert(index, value);
            Ok(())
        }
        _ => Err(format!("the parent of `{path}` is neither an object nor an array")),
    }
}

fn remove(document: &mut Value, path: &str) -> Result<Value, String> {
    let (node, last) = parent(document, path)?;
    match node {
        Value::Object(map) => map.remove(&last),
        Value::Array(items) => {
            let index = index(&last, path)?;
            (index < items.len()).then(|| items.remove(index))
        }
        _ => None,
    }
    .ok_or_else(|| format!("`{path}` does not exist"))
}

fn index(token: &str, path: &str) -> Result<usize, String> {
    if token.len() > 1 && token.starts_with('0') {
        return Err(format!("`{path}`: array indexes have no leading zeros"));
    }
    token.parse().map_err(|_| format!("`{path}`: `{token}` is not an array index"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use serde_json::json;

    #[test]
    fn the_rfc_operations() {
        let doc = json!({"a": {"b": [1, 2]}, "c": "x"});
        let patched = apply(
            &doc,
            &json!([
                {"op": "add", "path": "/a/b/1", "value": 9},
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "replace", "path": "/c", "value": "y"},
                {"op": "copy", "from": "/c", "path": "/d"},
                {"op": "move", "from": "/d", "path": "/e~1f"},
                {"op": "remove", "path": "/a/b/0"},
                {"op": "test", "path": "/c", "value": "y"}
            ]),
        )
        .unwrap();
        assert_eq!(patched, json!({"a": {"b": [9, 2, 3]}, "c": "y", "e/f": "y"}));
    }

    #[test]
    fn failures_change_nothing_and_say_why() {
        let doc = json!({"a": 1});
        for patch in [
            json!({"op": "add"}),
            json!([{"op": "remove", "path": "/b"}]),
            json!([{"op": "replace", "path": "/b", "value": 1}]),
            json!([{"op": "test", "path": "/a", "value": 2}]),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "path": "a", "value": 1}]),
            json!([{"op": "add", "path": "/x/y", "value": 1}]),
        ] {
            assert!(apply(&doc, &patch).is_err(), "{patch}");
        }
    }
}
