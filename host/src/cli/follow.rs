//! `wasmstate follow`: an entity's events as they are committed, read from
//! the server's Server-Sent Events stream, one line each.

use anyhow::Context;

use super::show;
use super::table::styled_stdout;
use crate::client::Client;

/// Prints the events of `path`'s stream (an entity's
/// `/events?follow=true&from=N`) until the server ends it: a row each, or
/// with `json` each event's JSON on a line of its own.
pub async fn follow(client: &Client, path: &str, json: bool) -> anyhow::Result<()> {
    let mut response = client.stream(path).await?;
    if !json {
        let header = "SEQ  VERSION  EVENT";
        if styled_stdout() {
            println!("\x1b[1m{header}\x1b[0m");
        } else {
            println!("{header}");
        }
    }
    let mut parser = SseParser::default();
    while let Some(chunk) = response.chunk().await.context("the event stream broke off")? {
        for data in parser.push(&chunk) {
            let event: serde_json::Value = serde_json::from_str(&data)
                .with_context(|| format!("the server sent an event that is not JSON: {data}"))?;
            if json {
                println!("{event}");
            } else {
                let cells = show::event_row(&event);
                // Columns as wide as the header's, so rows line up as they come.
                println!("{:<3}  {:<7}  {}", cells[0], cells[1], cells[2]);
            }
        }
    }
    Ok(())
}

/// Splits a Server-Sent Events byte stream into the `data` of each event.
#[derive(Default)]
struct SseParser {
    /// Bytes of a line not yet ended.
    pending: Vec<u8>,
    /// The data lines of the event being read.
    data: Vec<String>,
}

impl SseParser {
    /// Takes the next bytes; answers the data of each event they complete.
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut done = Vec::new();
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    done.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(data) = line.strip_prefix("data:") {
                self.data.push(data.strip_prefix(' ').unwrap_or(data).to_string());
            }
            // `id:`, `event:` and comments (`:` keep-alives) say nothing more.
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_are_put_back_together() {
        let mut parser = SseParser::default();
        assert!(parser.push(b"id: 1\nevent: event\nda").is_empty());
        assert_eq!(
            parser.push(b"ta: {\"seq\":1}\n\n:\n\nid: 2\r\ndata: a\r\ndata: b\r\n\r\n"),
            ["{\"seq\":1}", "a\nb"]
        );
    }
}
