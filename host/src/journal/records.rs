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

/// What a command left to do once its writes were durable, as recorded for
/// its idempotency key: a repeat of the key does it again (each step under
/// a key derived from the command's, so its target answers from its own
/// record if it already ran).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedOutcome {
    /// The synchronous side effects, run in order before the reply.
    pub synchronous: Vec<Invocation>,
    /// The reply, or the forward that answers.
    pub reply: RecordedReply,
}

/// An idempotency record written with a command's effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The command's idempotency key.
    pub key: String,
    /// When the record stops counting, in ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// What the command left to do.
    pub outcome: RecordedOutcome,
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

/// The tags of an encoded [`RecordedOutcome`]: a reply message or a forward
/// (with no synchronous side effects), or side effects followed by either.
const TAG_MESSAGE: u8 = 0;
const TAG_FORWARD: u8 = 1;
const TAG_SIDE_EFFECTS: u8 = 2;

impl RecordedOutcome {
    /// Encodes as a tag byte and length-prefixed fields; the reply's own
    /// bytes (a message, or a forward's payload) come last, unprefixed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.synchronous.is_empty() {
            out.push(TAG_SIDE_EFFECTS);
            put_len(&mut out, self.synchronous.len());
            for effect in &self.synchronous {
                put_invocation_target(&mut out, effect);
                put_len(&mut out, effect.payload.len());
                out.extend_from_slice(&effect.payload);
            }
        }
        match &self.reply {
            RecordedReply::Message(bytes) => {
                out.push(TAG_MESSAGE);
                out.extend_from_slice(bytes);
            }
            RecordedReply::Forward(invocation) => {
                out.push(TAG_FORWARD);
                put_invocation_target(&mut out, invocation);
                out.extend_from_slice(&invocation.payload);
            }
        }
        out
    }

    /// Decodes what [`encode`](Self::encode) produced.
    pub fn decode(mut bytes: &[u8]) -> Option<Self> {
        let mut synchronous = Vec::new();
        if bytes.first() == Some(&TAG_SIDE_EFFECTS) {
            bytes = &bytes[1..];
            let count = take_len(&mut bytes)?;
            for _ in 0..count {
                let (service, entity, command) = take_invocation_target(&mut bytes)?;
                let len = take_len(&mut bytes)?;
                let payload = take(&mut bytes, len)?.to_vec();
                synchronous.push(Invocation { service, entity, command, payload });
            }
        }
        let (&tag, mut rest) = bytes.split_first()?;
        let reply = match tag {
            TAG_MESSAGE => RecordedReply::Message(rest.to_vec()),
            TAG_FORWARD => {
                let (service, entity, command) = take_invocation_target(&mut rest)?;
                RecordedReply::Forward(Invocation { service, entity, command, payload: rest.to_vec() })
            }
            _ => return None,
        };
        Some(Self { synchronous, reply })
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

fn put_invocation_target(out: &mut Vec<u8>, invocation: &Invocation) {
    for field in [&invocation.service, &invocation.entity, &invocation.command] {
        put_len(out, field.len());
        out.extend_from_slice(field.as_bytes());
    }
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    let taken = bytes.get(..len)?;
    *bytes = &bytes[len..];
    Some(taken)
}

fn take_len(bytes: &mut &[u8]) -> Option<usize> {
    Some(u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?) as usize)
}

fn take_invocation_target(bytes: &mut &[u8]) -> Option<(String, String, String)> {
    let mut field = || -> Option<String> {
        let len = take_len(bytes)?;
        Some(std::str::from_utf8(take(bytes, len)?).ok()?.to_string())
    };
    Some((field()?, field()?, field()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(service: &str, entity: &str, payload: &[u8]) -> Invocation {
        Invocation {
            service: service.into(),
            entity: entity.into(),
            command: "AddItem".into(),
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn recorded_outcomes_round_trip() {
        let replies = [
            RecordedReply::Message(Vec::new()),
            RecordedReply::Message(b"{\"ok\":true}".to_vec()),
            RecordedReply::Forward(invocation("cart", "ü/..", &[0, 1, 2, 255])),
            RecordedReply::Forward(invocation("", "", b"")),
        ];
        let effects = [
            vec![],
            vec![invocation("counter", "c", b"{}")],
            vec![invocation("a", "b", b""), invocation("c", "d", &[2])],
        ];
        for reply in &replies {
            for synchronous in &effects {
                let outcome = RecordedOutcome { synchronous: synchronous.clone(), reply: reply.clone() };
                assert_eq!(RecordedOutcome::decode(&outcome.encode()), Some(outcome));
            }
        }
        assert_eq!(RecordedOutcome::decode(&[]), None);
        assert_eq!(RecordedOutcome::decode(&[7]), None);
        assert_eq!(RecordedOutcome::decode(&[1, 9, 0, 0, 0, b'a']), None);
        assert_eq!(RecordedOutcome::decode(&[2, 1, 0, 0, 0]), None, "a side effect cut short");
    }

    #[test]
    fn a_reply_alone_is_encoded_as_before_side_effects_were_recorded() {
        let message = RecordedOutcome { synchronous: vec![], reply: RecordedReply::Message(b"hi".to_vec()) };
        assert_eq!(message.encode(), b"\0hi");
        let forward =
            RecordedOutcome { synchronous: vec![], reply: RecordedReply::Forward(invocation("s", "e", b"p")) };
        assert_eq!(forward.encode(), b"\x01\x01\0\0\0s\x01\0\0\0e\x07\0\0\0AddItemp");
    }
}
