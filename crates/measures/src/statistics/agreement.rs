//! Accumulator for NC4: of the rows decided at the top layer, how many get the same label from
//! the NCC classifier and from the network's own argmax (pass 2, needs the logits).

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Agreement {
    pub agree: u64,
    pub total: u64,
}

impl Agreement {
    pub fn merge(&mut self, other: &Agreement) {
        self.agree += other.agree;
        self.total += other.total;
    }
}
