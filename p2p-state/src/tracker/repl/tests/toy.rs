//! The toy replicated state the scenarios run on: a set of group names
//! (`CreateGroup` of an existing name is refused), the stored outcome of
//! every request, and the conflict log.

use super::*;

/// A set of group names; `CreateGroup` of an existing name is refused.
#[derive(Default, Debug, Clone, PartialEq)]
pub(crate) struct Toy {
    pub(super) names: BTreeSet<String>,
    recorded: BTreeMap<Origin, Outcome>,
    pub(super) applied: u64,
    /// Conflict records applied (request, reason), once per request.
    pub(super) conflicts: Vec<(Op, TrackerError)>,
}

impl Replicated for Toy {
    fn apply(&mut self, op: &Op) -> Outcome {
        self.applied += 1;
        let out = match &op.kind {
            OpKind::CreateGroup { group, .. } => {
                if self.names.insert(group.to_string()) {
                    Ok(p2p_proto::Reply::Done)
                } else {
                    Err(TrackerError::GroupExists {
                        group: group.clone(),
                    })
                }
            }
            OpKind::RecordConflict { op, reason } => {
                if !self.conflicts.iter().any(|(o, _)| o.origin == op.origin) {
                    self.conflicts.push(((**op).clone(), reason.clone()));
                }
                Ok(p2p_proto::Reply::Done)
            }
            _ => Ok(p2p_proto::Reply::Done),
        };
        if let Some(o) = op.origin {
            self.recorded.insert(o, out.clone());
        }
        out
    }
    fn digest(&self) -> Sha1Hash {
        sha1(&self.encode_snapshot())
    }
    fn encode_snapshot(&self) -> Bytes {
        let mut w = BytesMut::new();
        w.put_u64(self.applied);
        w.put_u32(self.names.len() as u32);
        for n in &self.names {
            GroupName::new(n.clone()).unwrap().encode(&mut w);
        }
        w.put_u32(self.recorded.len() as u32);
        for (o, out) in &self.recorded {
            o.encode(&mut w);
            out.encode(&mut w);
        }
        w.put_u32(self.conflicts.len() as u32);
        for (op, reason) in &self.conflicts {
            op.encode(&mut w);
            reason.encode(&mut w);
        }
        w.freeze()
    }
    fn decode_snapshot(b: Bytes) -> Result<Self, DecodeError> {
        let mut r = p2p_proto::Reader::new(b);
        let applied = r.u64("applied")?;
        let mut t = Toy {
            applied,
            ..Toy::default()
        };
        for _ in 0..r.count("names", 1 << 20, 3)? {
            t.names.insert(GroupName::decode(&mut r)?.to_string());
        }
        for _ in 0..r.count("recorded", 1 << 20, 26)? {
            let o = Origin::decode(&mut r)?;
            t.recorded.insert(o, Outcome::decode(&mut r)?);
        }
        for _ in 0..r.count("conflicts", 1 << 20, 11)? {
            let op = Op::decode(&mut r)?;
            t.conflicts.push((op, TrackerError::decode(&mut r)?));
        }
        r.finish()?;
        Ok(t)
    }
    fn revalidate(&self, op: &Op) -> Result<(), TrackerError> {
        match &op.kind {
            OpKind::CreateGroup { group, .. } if self.names.contains(group.as_str()) => {
                Err(TrackerError::GroupExists {
                    group: group.clone(),
                })
            }
            _ => Ok(()),
        }
    }
    fn recorded(&self, origin: &Origin) -> Option<Outcome> {
        self.recorded.get(origin).cloned()
    }
    fn conflict_of(&self, origin: &Origin) -> Option<TrackerError> {
        self.conflicts
            .iter()
            .find(|(op, _)| op.origin.as_ref() == Some(origin))
            .map(|(_, r)| r.clone())
    }
}
