//! A puffgres `bin:` transform in Rust, standard library only.
//!
//! Protocol: puffgres writes one JSON RowEvent per line to stdin and reads one JSON action per line from stdout,
//! in the same order. Log to stderr (puffgres forwards it to its log); stdout carries actions only.
//!
//! This one indexes articles: `title` is kept, a URL `slug` and a `word_count` of `body` are computed, rows without
//! a title are skipped, and deletes delete. A bad input line gets an invalid answer (which puffgres dead-letters)
//! rather than a crash, so the process keeps serving the following rows.

use std::io::{self, BufRead, BufReader, Write};

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    /// kept as written, so that large integers pass through exactly
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn parse(text: &'a str) -> Result<Json, String> {
        let mut p = Parser { s: text.as_bytes(), i: 0 };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing characters at byte {}", p.i));
        }
        Ok(v)
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> Result<(), String> {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(format!("expected {} at byte {}", lit, self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            None => Err("unexpected end of input".into()),
            Some(b'n') => self.eat("null").map(|_| Json::Null),
            Some(b't') => self.eat("true").map(|_| Json::Bool(true)),
            Some(b'f') => self.eat("false").map(|_| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => self.list(b']', |p| p.value()).map(Json::Arr),
            Some(b'{') => self
                .list(b'}', |p| {
                    p.ws();
                    let key = p.string()?;
                    p.ws();
                    p.eat(":")?;
                    Ok((key, p.value()?))
                })
                .map(Json::Obj),
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.s.len() && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    self.i += 1;
                }
                Ok(Json::Num(String::from_utf8_lossy(&self.s[start..self.i]).into_owned()))
            }
            Some(c) => Err(format!("unexpected {:?} at byte {}", *c as char, self.i)),
        }
    }

    /// The items of an array or object, from its opening bracket (at `self.i`) to `close`, separated by commas.
    fn list<T>(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Result<T, String>) -> Result<Vec<T>, String> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.s.get(self.i) == Some(&close) {
            self.i += 1;
            return Ok(items);
        }
        loop {
            items.push(item(self)?);
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(&c) if c == close => {
                    self.i += 1;
                    return Ok(items);
                }
                _ => return Err(format!("expected , or {} at byte {}", close as char, self.i)),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.s.get(self.i..self.i + 4).ok_or("truncated \\u escape")?;
        let text = std::str::from_utf8(digits).map_err(|_| "bad \\u escape")?;
        self.i += 4;
        u32::from_str_radix(text, 16).map_err(|_| "bad \\u escape".into())
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat("\"")?;
        let mut out = String::new();
        loop {
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i] != b'"' && self.s[self.i] != b'\\' {
                self.i += 1;
            }
            // the input is a &str, and we only stop at ASCII bytes, so this slice is valid UTF-8
            out.push_str(std::str::from_utf8(&self.s[start..self.i]).unwrap());
            match self.s.get(self.i) {
                None => return Err("unterminated string".into()),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                _ => {
                    self.i += 1;
                    let esc = *self.s.get(self.i).ok_or("unterminated escape")?;
                    self.i += 1;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) && self.s[self.i..].starts_with(b"\\u") {
                                self.i += 2;
                                let low = self.hex4()?;
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF);
                            }
                            out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        }
                        c => return Err(format!("bad escape \\{}", c as char)),
                    }
                }
            }
        }
    }
}

fn write_json(v: &Json, out: &mut String) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Num(n) => out.push_str(n),
        Json::Str(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Json::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Json::Obj(fields) => {
            out.push('{');
            for (i, (k, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(&Json::Str(k.clone()), out);
                out.push(':');
                write_json(item, out);
            }
            out.push('}');
        }
    }
}

fn slug(title: &str) -> String {
    let mut s = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            s.push(c);
        } else if !s.is_empty() && !s.ends_with('-') {
            s.push('-');
        }
    }
    s.trim_end_matches('-').to_string()
}

fn obj(fields: Vec<(&str, Json)>) -> Json {
    Json::Obj(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// The transformation itself: one event in, one action out.
fn transform(event: &Json) -> Json {
    let kind = event.get("type").or_else(|| event.get("op")).and_then(Json::as_str).unwrap_or("");
    if kind == "delete" {
        return obj(vec![("type", Json::Str("delete".into()))]);
    }
    let row = event.get("new");
    let title = match row.and_then(|r| r.get("title")).and_then(Json::as_str) {
        Some(t) if !t.trim().is_empty() => t,
        _ => return obj(vec![("type", Json::Str("skip".into()))]),
    };
    let body = row.and_then(|r| r.get("body")).and_then(Json::as_str).unwrap_or("");
    obj(vec![
        ("type", Json::Str("upsert".into())),
        (
            "attributes",
            obj(vec![
                ("title", Json::Str(title.to_string())),
                ("slug", Json::Str(slug(title))),
                ("word_count", Json::Num(body.split_whitespace().count().to_string())),
            ]),
        ),
    ])
}

fn main() {
    let stdin = io::stdin();
    let mut input = BufReader::new(stdin.lock());
    let stdout = io::stdout();
    let mut output = io::BufWriter::new(stdout.lock());
    let mut line = String::new();
    let mut answer = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) => break, // puffgres closed stdin: shut down
            Ok(_) => {}
            Err(e) => {
                eprintln!("rust-transform: cannot read stdin: {}", e);
                std::process::exit(1);
            }
        }
        if line.trim().is_empty() {
            continue;
        }
        answer.clear();
        match Parser::parse(line.trim_end()) {
            Ok(event) => write_json(&transform(&event), &mut answer),
            Err(e) => {
                // answer anyway, so that the following lines stay matched with their events
                eprintln!("rust-transform: unreadable event: {}", e);
                answer.push_str("{\"type\":\"invalid\"}");
            }
        }
        answer.push('\n');
        if output.write_all(answer.as_bytes()).is_err() {
            break;
        }
        // flush once nothing more is waiting, so a batch costs one write rather than one per line
        if input.buffer().is_empty() && output.flush().is_err() {
            break;
        }
    }
    let _ = output.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let text = r#"{"a":[1,-2.5e3,true,null],"s":"x\"y\\z\u00e9\ud83d\ude00"}"#;
        let v = Parser::parse(text).unwrap();
        let mut out = String::new();
        write_json(&v, &mut out);
        assert_eq!(out, "{\"a\":[1,-2.5e3,true,null],\"s\":\"x\\\"y\\\\zé😀\"}");
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Hello, World! 2024"), "hello-world-2024");
    }
}
