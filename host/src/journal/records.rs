//! The records the journal stores besides events: recorded replies for
//! idempotency and outbox entries.

/// A side effect waiting in the outbox, or a forward target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The service to invoke.
    pub service: String,
    /// The entity to invoke.
    pub entity: String,
    /// The command's name.
    pub command: String,
    /// The command's payload.
    pub payload: Vec<u8>,
}

/// The reply a command gave, as recorded for its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedReply {
    /// A reply message.
    Message(Vec<u8>),
    /// A forward: replaying the key follows it again.
    Forward(Invocation),
}

/// An idempotency record written with a command's effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The client's `Idempotency-Key`.
    pub key: String,
    /// When the record stops counting, in ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// What the command answered.
    pub reply: RecordedReply,
}

/// An outbox entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its id, in the order entries were committed.
    pub id: u64,
    /// What to invoke.
    pub invocation: Invocation,
    /// Delivery attempts that failed so far.
    pub attempts: u32,
    /// When the next attempt is due, in ms since the Unix epoch.
    pub next_attempt_ms: u64,
}

impl RecordedReply {
    /// Encodes as a tag byte and length-prefixed fields.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            RecordedReply::Message(bytes) => {
                let mut out = Vec::with_capacity(bytes.len() + 1);
                out.push(0);
                out.extend_from_slice(bytes);
                out
            }
            RecordedReply::Forward(inv) => {
                let mut out = vec![1];
                for field in [inv.service.as_bytes(), inv.entity.as_bytes(), inv.command.as_bytes()] {
                    out.extend_from_slice(&(field.len() as u32).to_le_bytes());
                    out.extend_from_slice(field);
                }
                out.extend_from_slice(&inv.payload);
                out
            }
        }
    }

    /// Decodes what [`encode`](Self::encode) produced.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&tag, mut rest) = bytes.split_first()?;
        match tag {
            0 => Some(RecordedReply::Message(rest.to_vec())),
            1 => {
                let mut field = || -> Option<String> {
                    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
                    let text = std::str::from_utf8(rest.get(4..4 + len)?).ok()?.to_string();
                    rest = &rest[4 + len..];
                    Some(text)
                };
                let (service, entity, command) = (field()?, field()?, field()?);
                Some(RecordedReply::Forward(Invocation { service, entity, command, payload: rest.to_vec() }))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_replies_round_trip() {
        let cases = [
            RecordedReply::Message(Vec::new()),
            RecordedReply::Message(b"{\"ok\":true}".to_vec()),
            RecordedReply::Forward(Invocation {
                service: "cart".into(),
                entity: "ü/..".into(),
                command: "AddItem".into(),
                payload: vec![0, 1, 2, 255],
            }),
            RecordedReply::Forward(Invocation {
                service: String::new(),
                entity: String::new(),
                command: String::new(),
                payload: Vec::new(),
            }),
        ];
        for case in cases {
            assert_eq!(RecordedReply::decode(&case.encode()), Some(case));
        }
        assert_eq!(RecordedReply::decode(&[]), None);
        assert_eq!(RecordedReply::decode(&[7]), None);
        assert_eq!(RecordedReply::decode(&[1, 9, 0, 0, 0, b'a']), None);
    }
}
