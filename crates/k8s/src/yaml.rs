//! A small block-style YAML emitter for JSON values.
//!
//! Every string is double-quoted, so YAML 1.1 readers (go-yaml v2 behind `kubectl`, PyYAML)
//! never turn `on`, `no`, `03`, `1e3`, `*` or `~` into booleans, numbers, aliases or null.
//! Mapping keys stay plain only when they cannot be read as anything but a string.

use serde_json::{Map, Value};

/// Renders `docs` as a YAML stream: each document starts with `---`, ready for
/// `kubectl apply -f -`.
///
/// ```
/// let doc = serde_json::json!({"kind": "ConfigMap", "data": {"on": "no", "size": 3}});
/// assert_eq!(
///     restash_k8s::to_yaml_stream(&[doc]),
///     "---\nkind: \"ConfigMap\"\ndata:\n  \"on\": \"no\"\n  size: 3\n"
/// );
/// ```
pub fn to_yaml_stream(docs: &[Value]) -> String {
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&to_yaml(doc));
    }
    out
}

/// Renders one value as a YAML document body (no `---` line). Numbers are written as JSON
/// writes them, which YAML reads back as the same numbers for the integers manifests hold.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_map(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => write_seq(a, 0, &mut out),
        v => {
            write_scalar(v, &mut out);
            out.push('\n');
        }
    }
    out
}

fn is_collection(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn write_map(m: &Map<String, Value>, indent: usize, out: &mut String) {
    for (k, v) in m {
        push_indent(indent, out);
        write_key(k, out);
        out.push(':');
        match v {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                write_map(inner, indent + 2, out);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                write_seq(items, indent + 2, out);
            }
            v => {
                out.push(' ');
                write_scalar(v, out);
                out.push('\n');
            }
        }
    }
}

fn write_seq(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        if is_collection(item) {
            // The item is rendered two columns deeper, then its first indentation becomes
            // the "- " marker: the first key (or nested item) shares the marker's line.
            let mut inner = String::new();
            match item {
                Value::Object(m) => write_map(m, indent + 2, &mut inner),
                Value::Array(a) => write_seq(a, indent + 2, &mut inner),
                _ => unreachable!("is_collection"),
            }
            push_indent(indent, out);
            out.push_str("- ");
            out.push_str(&inner[indent + 2..]);
        } else {
            push_indent(indent, out);
            out.push_str("- ");
            write_scalar(item, out);
            out.push('\n');
        }
    }
}

fn push_indent(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn write_scalar(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => quote(s, out),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

/// Words YAML 1.1 reads as booleans or null when plain.
const RESERVED: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];

fn write_key(k: &str, out: &mut String) {
    let mut chars = k.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !RESERVED.contains(&k.to_ascii_lowercase().as_str());
    if plain {
        out.push_str(k);
    } else {
        quote(k, out);
    }
}

/// A double-quoted YAML scalar. Characters outside YAML's printable set, and those YAML 1.1
/// treats as line breaks (NEL, LS, PS), are escaped as `\uXXXX`.
fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn needs_escape(c: char) -> bool {
    let u = c as u32;
    u < 0x20
        || (0x7f..=0x9f).contains(&u)
        || matches!(u, 0x2028 | 0x2029 | 0xfeff | 0xfffe | 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_always_quoted() {
        let v = json!({"a": "on", "b": "03", "c": "*", "d": "~", "e": "1e3", "f": "null"});
        assert_eq!(
            to_yaml(&v),
            "a: \"on\"\nb: \"03\"\nc: \"*\"\nd: \"~\"\ne: \"1e3\"\nf: \"null\"\n"
        );
    }

    #[test]
    fn risky_keys_are_quoted_plain_keys_are_not() {
        let v = json!({"on": 1, "No": 2, "3": 3, "app.kubernetes.io/name": 4, "a b": 5, "": 6});
        assert_eq!(
            to_yaml(&v),
            "\"on\": 1\n\"No\": 2\n\"3\": 3\napp.kubernetes.io/name: 4\n\"a b\": 5\n\"\": 6\n"
        );
    }

    #[test]
    fn escapes() {
        let v = json!([
            "a\"b\\c\nd\te\r",
            "\u{0}\u{7f}\u{85}\u{2028}\u{feff}",
            "é😀"
        ]);
        assert_eq!(
            to_yaml(&v),
            "- \"a\\\"b\\\\c\\nd\\te\\r\"\n- \"\\u0000\\u007F\\u0085\\u2028\\uFEFF\"\n- \"é😀\"\n"
        );
    }

    #[test]
    fn nesting_and_empty_collections() {
        let v = json!({
            "spec": {
                "containers": [
                    {"name": "x", "args": ["a", "b"], "env": [], "resources": {}},
                    {"name": "y"}
                ],
                "matrix": [["a", "b"], [], [{"k": true}]],
                "n": null,
                "f": false
            }
        });
        let want = "\
spec:
  containers:
    - name: \"x\"
      args:
        - \"a\"
        - \"b\"
      env: []
      resources: {}
    - name: \"y\"
  matrix:
    - - \"a\"
      - \"b\"
    - []
    - - k: true
  \"n\": null
  f: false
";
        assert_eq!(to_yaml(&v), want);
    }

    #[test]
    fn stream_separates_documents() {
        let s = to_yaml_stream(&[json!({"a": 1}), json!({"b": 2})]);
        assert_eq!(s, "---\na: 1\n---\nb: 2\n");
        assert_eq!(to_yaml_stream(&[]), "");
    }
}
