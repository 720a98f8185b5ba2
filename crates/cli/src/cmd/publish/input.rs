//! Reading `publish` input: NDJSON or one JSON array, parsed as it arrives
//! ([`read_events`]), and the flag overrides applied to every event read
//! ([`Overrides`]).

use std::io::BufRead;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Changes made to every event read from a file.
pub(super) struct Overrides {
    pub(super) stream: Option<String>,
    pub(super) source: Option<String>,
    pub(super) new_ids: bool,
}

impl Overrides {
    pub(super) fn apply(&self, event: &mut Value) {
        let Value::Object(obj) = event else { return };
        if let Some(stream) = &self.stream {
            obj.remove("stream");
            obj.insert("stream_id".into(), Value::String(stream.clone()));
        }
        if let Some(source) = &self.source {
            obj.insert("source".into(), Value::String(source.clone()));
        }
        if self.new_ids {
            obj.remove("id");
            obj.remove("offset");
        }
    }
}

/// Reads events from `reader`: one JSON array, or NDJSON (any whitespace-separated
/// sequence of JSON objects). Calls `sink` for each event as soon as it is parsed;
/// `sink` returns false to stop reading.
///
/// # Errors
/// Invalid JSON (with line and column), or an item that is not an object.
pub(super) fn read_events<R: BufRead>(
    mut reader: R,
    mut sink: impl FnMut(Value) -> bool,
) -> Result<()> {
    // Peek at the first non-blank byte to tell an array from NDJSON.
    let first = loop {
        let buf = reader.fill_buf().context("cannot read input")?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let b = buf[i];
                reader.consume(i);
                break b;
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    if first == b'[' {
        let items: Vec<Value> =
            serde_json::from_reader(reader).context("input is not a valid JSON array")?;
        for (i, item) in items.into_iter().enumerate() {
            if !item.is_object() {
                bail!("array item {} is not a JSON object", i + 1);
            }
            if !sink(item) {
                break;
            }
        }
        return Ok(());
    }
    let stream = serde_json::Deserializer::from_reader(reader).into_iter::<Value>();
    for (i, item) in stream.enumerate() {
        let item = item.with_context(|| format!("input item {} is not valid JSON", i + 1))?;
        if !item.is_object() {
            bail!("input item {} is not a JSON object", i + 1);
        }
        if !sink(item) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        read_events(input.as_bytes(), |v| {
            out.push(v);
            true
        })?;
        Ok(out)
    }

    #[test]
    fn reads_ndjson_arrays_and_blank_input() {
        let nd = "{\"type\":\"a\"}\n\n{\"type\":\"b\"}\r\n{\"type\":\n \"c\"}\n";
        let types: Vec<_> = read_all(nd)
            .unwrap()
            .iter()
            .map(|v| v["type"].clone())
            .collect();
        assert_eq!(types, ["a", "b", "c"]);
        let arr = "  \n[{\"type\":\"a\"}, {\"type\":\"b\"}]\n";
        assert_eq!(read_all(arr).unwrap().len(), 2);
        assert!(read_all("").unwrap().is_empty());
        assert!(read_all(" \n\t ").unwrap().is_empty());
    }

    #[test]
    fn bad_input_names_the_item() {
        let err = read_all("{\"type\":\"a\"}\n{nope}\n").unwrap_err();
        assert!(format!("{err:#}").contains("item 2"), "{err:#}");
        let err = read_all("{\"type\":\"a\"}\n42\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("item 2 is not a JSON object"),
            "{err:#}"
        );
        let err = read_all("[{\"a\":1}, 3]").unwrap_err();
        assert!(format!("{err:#}").contains("array item 2"), "{err:#}");
        assert!(read_all("[{\"a\":1}").is_err());
    }

    #[test]
    fn sink_can_stop_reading() {
        let mut n = 0;
        read_events("{}\n{}\n{}\n".as_bytes(), |_| {
            n += 1;
            n < 2
        })
        .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn overrides_replace_stream_and_source() {
        let o = Overrides {
            stream: Some("scores".into()),
            source: None,
            new_ids: true,
        };
        let mut v = serde_json::json!({"id": "k", "offset": 3, "stream": "old", "source": "s"});
        o.apply(&mut v);
        assert_eq!(v, serde_json::json!({"stream_id": "scores", "source": "s"}));
    }
}
