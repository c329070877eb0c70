//! The walk's visited marks, one array per thread.

use std::cell::RefCell;

thread_local! {
    /// The walk's visited marks: a node is visited when its mark equals the current epoch,
    /// so starting a walk costs one increment instead of clearing an array.
    pub(crate) static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), epoch: 0 }) };
}

pub(crate) struct Visited {
    marks: Vec<u16>,
    epoch: u16,
}

impl Visited {
    #[inline]
    pub(crate) fn start(&mut self, slots: usize) {
        if self.marks.len() < slots {
            self.marks.resize(slots, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `node`; false when it was marked already.
    #[inline]
    pub(crate) fn insert(&mut self, node: u32) -> bool {
        match self.marks.get_mut(node as usize) {
            Some(mark) if *mark != self.epoch => {
                *mark = self.epoch;
                true
            }
            Some(_) | None => false,
        }
    }
}
