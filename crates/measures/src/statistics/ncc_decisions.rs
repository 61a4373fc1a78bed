//! Accumulator: how many rows the nearest-class-center classifier of the train means assigns to
//! their own class, out of how many it decided (pass 2; `ncc.rs` turns it into an accuracy).

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NccDecisions {
    pub correct: u64,
    pub counted: u64,
    /// Rows the layer's linear probe (ridge classifier) gets right, when it has one.
    pub linear_correct: u64,
}

impl NccDecisions {
    pub fn merge(&mut self, other: &NccDecisions) {
        self.correct += other.correct;
        self.counted += other.counted;
        self.linear_correct += other.linear_correct;
    }
}
