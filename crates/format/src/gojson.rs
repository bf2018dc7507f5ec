//! Go's `encoding/json` string escaping and `strconv.Quote`/`Unquote`, which restic uses for
//! node names (tree ids are hashes of these exact bytes), and Go's leniency when decoding.

use serde::{Deserialize, Deserializer};

/// Decodes JSON `null` as the zero value. Go's `encoding/json` leaves a field untouched on
/// `null` (and a nil slice is how Go writes an empty one), so a field that may be absent may
/// also be `null`. Pair with `#[serde(default)]` for the absent case.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Appends `s` as a JSON string literal the way Go 1.19's `json.Marshal` writes it:
/// HTML-safe (`<`, `>`, `&` as `\u003c`…), U+2028/2029 escaped, other non-ASCII raw.
pub fn write_go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether Go's `unicode.IsPrint` holds for `c` (letters, marks, numbers, punctuation,
/// symbols and the ASCII space). Without Unicode category tables this treats controls,
/// non-ASCII spaces, format characters, private use and noncharacters as unprintable,
/// which covers what file names contain in practice.
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let format_chars = matches!(u,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x08E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F);
    let private = matches!(u, 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD);
    let nonchar = (u & 0xFFFE) == 0xFFFE || (0xFDD0..=0xFDEF).contains(&u);
    !(format_chars || private || nonchar)
}

/// Go's `strconv.Quote(name)` without the surrounding quotes: the form restic stores node
/// names in, so that any byte string (invalid UTF-8 too) survives JSON.
pub fn go_quote(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (v, b) = rest.split_at(e.valid_up_to());
                (std::str::from_utf8(v).expect("valid prefix"), b)
            }
        };
        for c in valid.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c if is_go_printable(c) => out.push(c),
                c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push_str(&format!("\\U{:08x}", c as u32)),
            }
        }
        if bad.is_empty() {
            break;
        }
        out.push_str(&format!("\\x{:02x}", bad[0]));
        rest = &bad[1..];
    }
    out
}

fn hex_val(b: u8) -> Option<u32> {
    (b as char).to_digit(16)
}

/// Go's `strconv.Unquote("\"" + s + "\"")`: turns a stored node name back into its bytes.
pub fn go_unquote(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let err = || format!("invalid quoted name {s:?}");
    while i < b.len() {
        match b[i] {
            // Go refuses a raw newline in a double-quoted string, as it refuses the quote.
            b'"' | b'\n' => return Err(err()),
            b'\\' => {
                let e = *b.get(i + 1).ok_or_else(err)?;
                i += 2;
                match e {
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b'f' => out.push(0x0c),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(0x0b),
                    b'\\' => out.push(b'\\'),
                    b'"' => out.push(b'"'),
                    b'\'' => return Err(err()),
                    b'x' => {
                        let hi = b.get(i).and_then(|c| hex_val(*c)).ok_or_else(err)?;
                        let lo = b.get(i + 1).and_then(|c| hex_val(*c)).ok_or_else(err)?;
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    b'0'..=b'7' => {
                        let mut v = (e - b'0') as u32;
                        for k in 0..2 {
                            let d = b.get(i + k).filter(|c| (b'0'..=b'7').contains(*c));
                            v = v * 8 + (*d.ok_or_else(err)? - b'0') as u32;
                        }
                        if v > 255 {
                            return Err(err());
                        }
                        out.push(v as u8);
                        i += 2;
                    }
                    b'u' | b'U' => {
                        let n = if e == b'u' { 4 } else { 8 };
                        let mut v = 0u32;
                        for k in 0..n {
                            let d = b.get(i + k).and_then(|c| hex_val(*c)).ok_or_else(err)?;
                            v = v.checked_mul(16).ok_or_else(err)? + d;
                        }
                        i += n;
                        let c = char::from_u32(v).ok_or_else(err)?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    _ => return Err(err()),
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_name_json(name: &[u8]) -> String {
        let mut out = String::new();
        write_go_string(&mut out, &go_quote(name));
        out
    }

    #[test]
    fn restic_verified_examples() {
        let cases: &[(&[u8], &str)] = &[
            (b"bad\xffname", r#""bad\\xffname""#),
            (
                br#"we\"ird\\name<&>"#,
                r#""we\\\\\\\"ird\\\\\\\\name\u003c\u0026\u003e""#,
            ),
            ("ünïcödé".as_bytes(), "\"ünïcödé\""),
            (b"tab\tx", r#""tab\\tx""#),
            (b"a\x01b", r#""a\\x01b""#),
            ("nbsp\u{a0}x".as_bytes(), r#""nbsp\\u00a0x""#),
            ("emoji😀".as_bytes(), "\"emoji😀\""),
            ("zw\u{200b}sp".as_bytes(), r#""zw\\u200bsp""#),
        ];
        for (name, json) in cases {
            assert_eq!(&node_name_json(name), json, "{name:?}");
            let quoted: String = serde_json::from_str(json).unwrap();
            assert_eq!(go_unquote(&quoted).unwrap(), *name);
        }
    }

    #[test]
    fn unquote_rejects_bad_escapes() {
        for bad in [
            r"\q", r"\x4", "a\"b", r"\400", r"\", r"\'", "a\nb", r"\ud800",
        ] {
            assert!(go_unquote(bad).is_err(), "{bad}");
        }
        assert_eq!(
            go_unquote(r"\101\u00e9\U0001F600").unwrap(),
            "Aé😀".as_bytes()
        );
        // Other raw control characters pass, as in Go.
        assert_eq!(go_unquote("a\tb\r").unwrap(), b"a\tb\r");
    }

    #[test]
    fn control_chars_in_json() {
        let mut s = String::new();
        write_go_string(&mut s, "a\u{8}\u{c}\u{1f}\u{7f}");
        assert_eq!(s, "\"a\\u0008\\u000c\\u001f\u{7f}\"");
    }
}
